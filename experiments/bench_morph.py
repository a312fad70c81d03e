"""Benchmark the morphism engine: cost of a morphism, and what morphisms cost at run time.

For networks after 0, 10 and 40 random morphisms of a NASH start net it prints
- the time to list the applicable moves and to apply one morphism (build the child),
- the child's forward time vs the start net's (a ratio: the price of the bigger network),
- our graph interpreter's forward time vs torch.fx's straight-line code for the same network
  (a ratio near 1 means walking the precomputed plan costs nothing worth measuring).
All timings are medians, measured side by side in this one process.

    python experiments/bench_morph.py [--input 3,32,32] [--batch 64] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch
import torch.fx

from morphisms import moves, random_morphisms, start_net


def median_time(fn, repeats: int, sync=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default="3,32,32")
    ap.add_argument("--widths", default="16,32,64")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--counts", default="0,10,40")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.input.split(","))
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(args.seed)
    start = start_net(shape[0], 10, tuple(int(w) for w in args.widths.split(",")), shape[1:]).eval()
    x = torch.randn(args.batch, *shape, device=device)

    def forward_time(net):
        net = net.to(device).eval()
        with torch.no_grad():
            for _ in range(3):
                net(x)
            return median_time(lambda: net(x), args.repeats, sync)

    base = forward_time(start)
    print(f"device {device}, input {shape}, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    header = (f"{'morphs':>6} {'nodes':>5} {'params':>10} {'moves':>5} {'list moves':>10} {'apply one':>10} "
              f"{'fwd ms':>8} {'fwd/start':>9} {'ours/fx':>7}")
    print(header)
    print("-" * len(header))
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        net, _ = random_morphisms(start, n, rng=args.seed)
        net = net.cpu().eval()
        options = moves(net)
        t_list = median_time(lambda: moves(net), 5)
        rng = random.Random(args.seed)
        sample = [rng.choice(options) for _ in range(10)]
        t_apply = statistics.median(median_time(lambda m=m: m.apply(net), 1) for m in sample)
        fwd = forward_time(net)
        traced = torch.fx.symbolic_trace(net).to(device)  # straight-line Python: no interpreter loop
        fx = forward_time(traced)
        with torch.no_grad():
            assert torch.allclose(traced(x), net(x), rtol=1e-5, atol=1e-6)
        print(f"{n:>6} {len(net.graph):>5} {net.num_params():>10,} {len(options):>5} {t_list * 1e3:>8.1f}ms "
              f"{t_apply * 1e3:>8.1f}ms {fwd * 1e3:>8.2f} {fwd / base:>9.2f} {fwd / fx:>7.3f}")
        rows.append({"morphisms": n, "nodes": len(net.graph), "params": net.num_params(), "moves": len(options),
                     "list_moves_ms": round(t_list * 1e3, 3), "apply_ms": round(t_apply * 1e3, 3),
                     "forward_ms": round(fwd * 1e3, 3), "forward_vs_start": round(fwd / base, 3),
                     "ours_vs_fx": round(fwd / fx, 3)})
    print(json.dumps({"device": str(device), "batch": args.batch, "input": list(shape), "rows": rows}))


if __name__ == "__main__":
    main()
