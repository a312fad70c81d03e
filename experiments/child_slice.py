"""Do children of one morphism kind trail their parent after a one-epoch slice? (issue 18's lever)

In the scaling study every step's child lost to its parent after its slice, by 0.4-4 points of
validation accuracy, though each computed the parent's function when made. This trains a start
net on a Fashion-MNIST subset for 40% of a cosine cycle, makes children of one kind (and of five
mixed moves), and trains parent and child one more epoch at the same point of the cycle with the
same batches. It prints, per child, the largest output difference at birth in eval mode and in
train mode on a batch other than the calibration batch (BN layers then use that batch's
statistics), and both networks' validation accuracy and training loss after the epoch.

    python experiments/child_slice.py [--data-dir /usr/share/datasets/fashion-mnist] [--subset 6000]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morphisms import random_morphisms, start_net  # noqa: E402
from nash.data import load_dataset  # noqa: E402
from nash.search.kit import net_from_state, net_state  # noqa: E402
from nash.train import evaluate, sgdr_train  # noqa: E402


def max_diff(a, b, x, train: bool) -> float:
    a, b = net_from_state(net_state(a)), net_from_state(net_state(b))  # copies: train mode moves BN statistics
    a.train(train), b.train(train)
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--subset", type=int, default=6000)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    d = load_dataset("fashion-mnist", args.data_dir, subset=args.subset, seed=0, image_size=28)
    net = start_net(d.train_x.shape[1], 10, widths=(64, 128, 256), input_size=28)
    sgdr_train(net, d.train_x, d.train_y, 4, cycle=(0.0, 0.4), seed=1)
    print(f"parent after 4 epochs: val acc {evaluate(net, d.val_x, d.val_y)[0]:.4f}")
    calib, other = d.train_x[:128], d.train_x[128:256]
    for kinds in [("insert_bn",), ("deepen",), ("widen",), ("add_skip",), ("deepen", "widen", "add_skip", "insert_bn")]:
        for s in range(args.seeds):
            child, moves = random_morphisms(net, 1 if len(kinds) == 1 else 5, rng=s, calibrate=calib, kinds=kinds)
            ev, tr = max_diff(net, child, other, False), max_diff(net, child, other, True)
            parent = net_from_state(net_state(net))
            rp = sgdr_train(parent, d.train_x, d.train_y, 1, cycle=(0.4, 0.5), seed=7)
            rc = sgdr_train(child, d.train_x, d.train_y, 1, cycle=(0.4, 0.5), seed=7)
            print(f"{'+'.join(kinds):32s} seed {s}: {len(moves)} moves, output diff at birth eval {ev:.1e} "
                  f"train {tr:.1e}; after 1 epoch val acc parent {evaluate(parent, d.val_x, d.val_y)[0]:.4f} "
                  f"child {evaluate(child, d.val_x, d.val_y)[0]:.4f}, train loss parent {rp.train_loss:.4f} "
                  f"child {rc.train_loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
