"""Benchmark: seconds per DARTS-family search step (alpha step + weight step) of each variant,
as a ratio to plain first-order DARTS, measured side by side in one process.

    python experiments/bench_darts.py                       # tiny and paper sizes, CPU
    python experiments/bench_darts.py --sizes tiny --rounds 5
    python experiments/bench_darts.py --device cuda --steps 20 --sizes paper
    python experiments/bench_darts.py --sizes 8x5x32x16     # channels x cells x batch x image side

Variants: 1st (DARTS first order, the baseline), 2nd (second order), rs and adv (SDARTS
smoothing of the weight step at epsilon 0.3, on first order), milenas (mixed level, lam 1),
nasp (proximal: one-hot architecture), nb201 (first order in the NAS-Bench-201 space: its
supernet at the same channels, with the benchmark's 5 cells per stage, whatever the size's
cell count).

Sizes: tiny = 4 channels, 5 cells, batch 16, 16x16; paper = the DARTS search setting, 16
channels, 8 cells, batch 64, 32x32 (random data: only the shapes matter). Every variant gets a
fresh seeded supernet and one untimed warm-up step; then --rounds rounds each time --steps
steps of every variant in turn (`nash.darts.search.search_step`, the real step), and a
variant's figure is its median over the rounds. Interleaving the variants this way makes the
ratios robust to a machine whose load changes during the run.

Memory: on CUDA the peak allocated by torch during a variant's timed steps
(torch.cuda.max_memory_allocated after a reset). On CPU there is no allocator counter: the
figure is the growth of the process's peak resident set (getrusage ru_maxrss) over its value
before the size's first supernet, read after each variant's warm-up, variants in the order
listed, so each figure is the high-water mark up to that variant (1st and 2nd as before; a
later variant's own need is masked when an earlier one needed more).

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nash.darts.architect import FirstOrder, MixedLevel, Proximal, SecondOrder  # noqa: E402
from nash.darts.search import search_step  # noqa: E402
from nash.darts.smoothing import AdversarialSmoothing, RandomSmoothing  # noqa: E402
from nash.darts.supernet import NB201Supernet, Supernet  # noqa: E402

PRESETS = {"tiny": (4, 5, 16, 16), "paper": (16, 8, 64, 32)}
VARIANTS = ("1st", "2nd", "rs", "adv", "milenas", "nasp", "nb201")
NB201_CELLS_PER_STAGE = 5
EPSILON = 0.3


def parse_size(text: str):
    if text in PRESETS:
        return text, PRESETS[text]
    try:
        c, layers, batch, side = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bad size {text!r}: use {', '.join(PRESETS)} or CxLAYERSxBATCHxSIDE, e.g. 8x5x32x16") from None
    return text, (c, layers, batch, side)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Setup:
    """One variant at one size: its supernet, optimizers, perturbation and batches."""

    def __init__(self, variant: str, size, steps: int, device):
        C, layers, batch, side = size
        torch.manual_seed(0)
        if variant == "nb201":
            self.net = NB201Supernet(C, 10, NB201_CELLS_PER_STAGE, 3).to(device)
        else:
            self.net = Supernet(C, 10, layers, 3).to(device)
        strategy = {"2nd": SecondOrder, "milenas": MixedLevel, "nasp": Proximal}.get(variant, FirstOrder)
        self.strategy = strategy(self.net)
        self.w_opt = torch.optim.SGD(self.net.weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        smoother = {"rs": RandomSmoothing, "adv": AdversarialSmoothing}.get(variant)
        self.perturb = partial(smoother(seed=0).perturb, epsilon=EPSILON) if smoother else None
        g = torch.Generator(device=device).manual_seed(0)

        def batch_pair():
            x = torch.randn(2 * batch, 3, side, side, generator=g, device=device)
            y = torch.randint(0, 10, (2 * batch,), generator=g, device=device)
            return (x[:batch], y[:batch]), (x[batch:], y[batch:])

        self.warm = batch_pair()
        self.data = [batch_pair() for _ in range(steps)]

    def step(self, train, val):
        search_step(self.net, self.strategy, self.w_opt, train, val, 0.025, 5.0, perturb=self.perturb)

    def timed(self, device) -> float:
        """Seconds per step over the prepared batches."""
        sync(device)
        t0 = time.perf_counter()
        for train, val in self.data:
            self.step(train, val)
        sync(device)
        return (time.perf_counter() - t0) / len(self.data)


def bench_size(size, steps: int, rounds: int, device) -> dict:
    base = rss_mb()
    setups, mem = {}, {}
    for v in VARIANTS:
        setups[v] = Setup(v, size, steps, device)
        setups[v].step(*setups[v].warm)  # warm-up: momentum buffers, kernels
        sync(device)
        if device.type != "cuda":
            mem[v] = rss_mb() - base
    times = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for v in VARIANTS:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times[v].append(setups[v].timed(device))
            if device.type == "cuda":
                mem[v] = max(mem.get(v, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
    s = {v: statistics.median(t) for v, t in times.items()}
    return {"s_per_step": s, "ratio_vs_1st": {v: s[v] / s["1st"] for v in VARIANTS}, "mem_mb": mem}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every variant in turn; the median counts")
    ap.add_argument("--sizes", default="tiny,paper", help="comma-separated: tiny, paper, CxLAYERSxBATCHxSIDE")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as run_search does on CPU
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [parse_size(s.strip()) for s in args.sizes.split(",") if s.strip()]
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{torch.get_num_threads()} threads"
    mem_label = "peak alloc MB" if device.type == "cuda" else "peak RSS +MB"
    print(f"device {device} ({name_of_device}), torch {torch.__version__}, "
          f"{args.rounds} rounds x {args.steps} timed steps per variant")
    header = f"{'size':<8} {'C':>3} {'cells':>5} {'batch':>5} {'side':>4}  {'variant':<8} {'s/step':>8} " \
             f"{'x 1st':>6} {mem_label:>13}"
    print(header)
    print("-" * len(header))
    # one throwaway step first, so library start-up (thread pools, kernel caches) is not billed
    # to the first size's memory
    throwaway = Setup("1st", (2, 3, 2, 8), 1, device)
    throwaway.step(*throwaway.warm)
    results = {}
    for name, size in sizes:
        r = results[name] = bench_size(size, args.steps, args.rounds, device)
        for v in VARIANTS:
            print(f"{name:<8} {size[0]:>3} {size[1]:>5} {size[2]:>5} {size[3]:>4}  {v:<8} "
                  f"{r['s_per_step'][v]:>8.4f} {r['ratio_vs_1st'][v]:>6.2f} {r['mem_mb'].get(v, float('nan')):>13.1f}")
    print()
    for name, r in results.items():
        print(f"{name}: step time relative to first order: "
              + ", ".join(f"{v} {r['ratio_vs_1st'][v]:.2f}x" for v in VARIANTS if v != "1st"))
    print(json.dumps({"device": str(device), "device_name": name_of_device, "torch": torch.__version__,
                      "rounds": args.rounds, "steps": args.steps,
                      "sizes": {name: {"size": dict(zip(("channels", "cells", "batch", "side"), size)),
                                       **{k: {v: round(x, 5) for v, x in d.items()} for k, d in results[name].items()}}
                                for name, size in sizes}}))


if __name__ == "__main__":
    main()
