"""Do children of one morphism kind trail their parent after a slice? (issue 18's lever)

In the scaling study every step's child lost to its parent after its slice, by 0.4-4 points of
validation accuracy, though each computed the parent's function when made. This trains a start
net on a Fashion-MNIST subset for 40% of a cosine cycle, makes children of one kind (and of five
mixed moves), and trains parent and child `--epochs` more epochs at the same point of the cycle
with the same batches. Per child it prints the largest output difference at birth in eval mode
and in train mode on a batch other than the calibration batch (BN layers then use that batch's
statistics), and the validation accuracy after the slice of:

  child        the child as the climb trains it
  child-frozen the child with its *new* BatchNorms held in eval mode for the slice (they keep the
               calibration statistics as fixed affine maps and never see batch statistics), to
               test whether batch statistics in new BNs are what costs the child

and, once per seed, the parent trained again with another batch order: the control that says how
far two runs of the *same* network differ after the slice (the noise floor of every gap).

With `--average K` the slice is trained in K pieces (momentum carried) and each network is also
scored as the average of the K snapshots that end the pieces (BN statistics recomputed on
training images, as SWA does): a candidate's score that depends less on the last few batches.
The control's spread says whether that score is less noisy than the last iterate's.

    python experiments/child_slice.py [--data-dir /usr/share/datasets/fashion-mnist]
        [--subset 10000] [--seeds 4] [--epochs 1] [--average 5]

The last line printed is one JSON object: per kind, the mean and spread of (child - parent).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morphisms import random_morphisms, start_net  # noqa: E402
from nash.averaging import BN_IMAGES, recompute_bn  # noqa: E402
from nash.data import load_dataset  # noqa: E402
from nash.search.kit import net_from_state, net_state  # noqa: E402
from nash.train import evaluate, sgdr_train  # noqa: E402

KINDS = [("insert_bn",), ("deepen",), ("widen",), ("add_skip",), ("deepen", "widen", "add_skip", "insert_bn")]


def copy_net(net):
    return net_from_state(net_state(net))


def max_diff(a, b, x, train: bool) -> float:
    a, b = copy_net(a), copy_net(b)  # copies: train mode moves BN statistics
    a.train(train), b.train(train)
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def freeze_new_bns(parent, child) -> int:
    """Hold the child's BatchNorms that the parent lacks in eval mode, whatever train() says."""
    new = set(child.graph.nodes) - set(parent.graph.nodes)
    frozen = 0
    for name in new:
        m = child.layers[name]
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            m.train = lambda mode=True, m=m: m  # Module.train() recurses through this: it stays in eval
            frozen += 1
    return frozen


def averaged(snapshots, like, x):
    """A copy of `like` with the mean of `snapshots` (state dicts) as its weights, its BN
    statistics recomputed over `x` (nash.averaging.recompute_bn; frozen BNs keep theirs)."""
    net = copy_net(like)
    state = {k: (sum(sd[k].double() for sd in snapshots) / len(snapshots)).to(last.dtype)
             if last.is_floating_point() else last for k, last in snapshots[-1].items()}
    net.load_state_dict(state)
    recompute_bn(net, x)
    return net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--subset", type=int, default=10000)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1, help="Length of the slice (a cycle is 10 epochs).")
    ap.add_argument("--average", type=int, default=1, help="Also score the mean of this many snapshots.")
    ap.add_argument("--no-freeze", dest="freeze", action="store_false", help="Skip the frozen-BN variant.")
    args = ap.parse_args()
    torch.manual_seed(0)
    d = load_dataset("fashion-mnist", args.data_dir, subset=args.subset, seed=0, image_size=28)
    net = start_net(d.train_x.shape[1], 10, widths=(64, 128, 256), input_size=28)
    sgdr_train(net, d.train_x, d.train_y, 4, cycle=(0.0, 0.4), seed=1)
    print(f"parent after 4 epochs: val acc {evaluate(net, d.val_x, d.val_y)[0]:.4f} "
          f"({d.val_x.shape[0]} validation images)")
    cycle = (0.4, 0.4 + 0.1 * args.epochs)
    calib, other = d.train_x[:128], d.train_x[128:256]

    def after_slice(n, seed):
        """(last iterate's val acc, the K-snapshot average's or None) after the slice."""
        if args.average <= 1:
            sgdr_train(n, d.train_x, d.train_y, args.epochs, cycle=cycle, seed=seed)
            return evaluate(n, d.val_x, d.val_y)[0], None
        k, opt, snaps = args.average, None, []
        for i in range(k):
            piece = (cycle[0] + (cycle[1] - cycle[0]) * i / k, cycle[0] + (cycle[1] - cycle[0]) * (i + 1) / k)
            opt = sgdr_train(n, d.train_x, d.train_y, args.epochs / k, cycle=piece, seed=seed * 1000 + i,
                             opt_state=opt).opt_state
            snaps.append({key: v.detach().clone() for key, v in n.state_dict().items()})
        avg = evaluate(averaged(snaps, n, d.train_x[:BN_IMAGES]), d.val_x, d.val_y)[0]
        return evaluate(n, d.val_x, d.val_y)[0], avg

    parent = after_slice(copy_net(net), 7)
    gaps = {}

    def record(key, got):
        gaps.setdefault(key, []).append(got[0] - parent[0])
        if got[1] is not None:
            gaps.setdefault(f"{key} [averaged]", []).append(got[1] - parent[1])
        return got[0]

    control = "control (parent, other batch order)"
    for s in range(args.seeds):
        record(control, after_slice(copy_net(net), 100 + s))
    print(f"parent after the slice: {parent[0]:.4f}" + (f" (averaged {parent[1]:.4f})" if parent[1] else "") +
          f"; control gaps {[round(g, 4) for g in gaps[control]]}", flush=True)
    for kinds in KINDS:
        name = "+".join(kinds)
        for s in range(args.seeds):
            child, moves = random_morphisms(net, 1 if len(kinds) == 1 else 5, rng=s, calibrate=calib, kinds=kinds)
            ev, tr = max_diff(net, child, other, False), max_diff(net, child, other, True)
            plain = record(f"{name} child", after_slice(copy_net(child), 7))
            frozen_child = copy_net(child)
            n_frozen = freeze_new_bns(net, frozen_child)
            frozen = ""
            if n_frozen and args.freeze:
                frozen = f", with its {n_frozen} new BNs frozen " \
                         f"{record(f'{name} child-frozen', after_slice(frozen_child, 7)):.4f}"
            print(f"{name:32s} seed {s}: {', '.join(m.kind for m in moves)}; output diff at birth eval {ev:.1e} "
                  f"train {tr:.1e}; val acc after the slice: child {plain:.4f}{frozen} (parent {parent[0]:.4f})",
                  flush=True)
    summary = {k: {"mean": round(statistics.mean(v), 4), "std": round(statistics.pstdev(v), 4), "n": len(v)}
               for k, v in gaps.items()}
    for k, v in summary.items():
        print(f"{k:45s} child - parent: {v['mean']:+.4f} +- {v['std']:.4f} ({v['n']})")
    print(json.dumps({"epochs": args.epochs, "parent_acc": parent[0], "gaps": summary}))


if __name__ == "__main__":
    main()
