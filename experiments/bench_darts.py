"""Benchmark: seconds and peak memory per DARTS search step (alpha step + weight step), nash's
fast path against the `plain` path that costs what the DARTS authors' search code costs, side by
side in one run; optionally the other variants of the family, as a ratio to fast first order.

    python experiments/bench_darts.py --sizes paper --steps 3        # plain vs fast, both orders
    python experiments/bench_darts.py --sizes tiny --rounds 5 --variants all
    python experiments/bench_darts.py --device cuda --steps 20 --sizes paper
    python experiments/bench_darts.py --sizes 16x8x32x32             # channels x cells x batch x image side

Paths (`nash.darts.plain` documents the plain one): plain-1st and plain-2nd compute every gradient
the authors' code computes (the alpha step backpropagates into every weight, 'none' runs, the
weight step also backpropagates into the alphas, second order builds an unrolled copy of the
model), NCHW, op by op; 1st and 2nd are nash's search step (`nash.darts.search.search_step`):
channels_last, the edges leaving a node computed together, no gradient nobody reads.
Variants (--variants): rs and adv (SDARTS smoothing at epsilon 0.3, first order), milenas, nasp,
nb201 (first order in the NAS-Bench-201 space, its own supernet: not like for like).

Sizes: tiny = 4 channels, 5 cells, batch 16, 16x16; paper = the DARTS search setting, 16
channels, 8 cells, batch 64, 32x32 (random data: only the shapes matter). Each setup gets a
fresh supernet from seed 0 and one untimed warm-up step; then --rounds rounds each time --steps
steps of every setup in turn; a setup's figure is its median over the rounds. Interleaving makes
the ratios robust to a machine whose load changes during the run.

Memory: each setup measured alone. On CUDA, after the timing (every other setup freed), the setup
is built again, runs its warm-up step and one step, and reports the peak torch allocated
(`cuda_memory`; `+MB` the step's own share). On CPU each setup runs
once more in a fresh process of its own (warm-up step and one step) and reports its peak resident
set (VmHWM of /proc/self/status; glibc's mmap threshold fixed, see memory_probe): `peak MB` is the whole process, `+MB` its growth over the process
with the model and data built, before the first step (the step's own working memory).

The last line printed is one JSON object with every figure and the plain/fast ratios.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nash.darts.architect import FirstOrder, MixedLevel, Proximal, SecondOrder  # noqa: E402
from nash.darts.plain import plain_search_step, reference_layout  # noqa: E402
from nash.darts.search import search_step  # noqa: E402
from nash.darts.smoothing import AdversarialSmoothing, RandomSmoothing  # noqa: E402
from nash.darts.supernet import NB201Supernet, Supernet  # noqa: E402

PRESETS = {"tiny": (4, 5, 16, 16), "paper": (16, 8, 64, 32)}
PATHS = ("plain-1st", "1st", "plain-2nd", "2nd")
VARIANTS = ("rs", "adv", "milenas", "nasp", "nb201")
NB201_CELLS_PER_STAGE = 5
EPSILON = 0.3
LR, GRAD_CLIP = 0.025, 5.0


def parse_size(text: str):
    if text in PRESETS:
        return text, PRESETS[text]
    try:
        c, layers, batch, side = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bad size {text!r}: use {', '.join(PRESETS)} or CxLAYERSxBATCHxSIDE, e.g. 8x5x32x16") from None
    return text, (c, layers, batch, side)


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MB. VmHWM (the peak
    resident set) belongs to this process image, unlike getrusage's ru_maxrss, which a child
    inherits from its parent across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise SystemExit(f"no {field} in /proc/self/status: the CPU memory probe needs Linux")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Setup:
    """One path or variant at one size: its supernet, optimizers, perturbation and batches."""

    def __init__(self, name: str, size, steps: int, device):
        C, layers, batch, side = size
        self.name = name
        torch.manual_seed(0)
        if name == "nb201":
            self.net = NB201Supernet(C, 10, NB201_CELLS_PER_STAGE, 3).to(device)
        else:
            self.net = Supernet(C, 10, layers, 3).to(device)
        self.plain_order = {"plain-1st": 1, "plain-2nd": 2}.get(name)
        if self.plain_order:
            reference_layout(self.net)
            self.a_opt = torch.optim.Adam(self.net.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        else:
            strategy = {"2nd": SecondOrder, "milenas": MixedLevel, "nasp": Proximal}.get(name, FirstOrder)
            self.strategy = strategy(self.net)
        self.w_opt = torch.optim.SGD(self.net.weights(), lr=LR, momentum=0.9, weight_decay=3e-4)
        smoother = {"rs": RandomSmoothing, "adv": AdversarialSmoothing}.get(name)
        self.perturb = partial(smoother(seed=0).perturb, epsilon=EPSILON) if smoother else None
        g = torch.Generator(device=device).manual_seed(0)

        def batch_pair():
            x = torch.randn(2 * batch, 3, side, side, generator=g, device=device)
            y = torch.randint(0, 10, (2 * batch,), generator=g, device=device)
            return (x[:batch], y[:batch]), (x[batch:], y[batch:])

        self.warm = batch_pair()
        self.data = [batch_pair() for _ in range(steps)]

    def step(self, train, val):
        if self.plain_order:
            plain_search_step(self.net, self.a_opt, self.w_opt, train, val, LR, GRAD_CLIP, self.plain_order)
        else:
            search_step(self.net, self.strategy, self.w_opt, train, val, LR, GRAD_CLIP, perturb=self.perturb)

    def timed(self, device) -> float:
        """Seconds per step over the prepared batches."""
        sync(device)
        t0 = time.perf_counter()
        for train, val in self.data:
            self.step(train, val)
        sync(device)
        return (time.perf_counter() - t0) / len(self.data)


def memory_probe(name: str, size, threads) -> dict:
    """Peak RSS of a fresh process that builds one setup and runs its warm-up step and one step."""
    cmd = [sys.executable, __file__, "--probe", name, "--sizes", "x".join(map(str, size))]
    if threads:
        cmd += ["--threads", str(threads)]
    # A fixed mmap threshold: glibc otherwise raises it as large blocks are freed and then serves
    # activations from a fragmenting heap, so the peak would measure the allocator's history
    # rather than the step's live tensors. Same setting for every path.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def cuda_memory(name: str, size, device) -> dict:
    """GPU memory of one setup alone (the others freed): built, its warm-up step, then one step.
    peak_mb: what torch had allocated at the step's peak (model, optimizer state, batches and the
    step's tensors); growth_mb: the step's own working memory above what was allocated before it;
    base_mb: what was still allocated before the setup was built (should be about 0)."""
    gc.collect()
    sync(device)
    base = torch.cuda.memory_allocated(device)
    setup = Setup(name, size, 1, device)
    setup.step(*setup.warm)  # momentum buffers and the like exist from here on, as in the timed steps
    sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    setup.step(*setup.data[0])
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    del setup
    gc.collect()
    return {"peak_mb": (peak - base) / 2**20, "growth_mb": (peak - before) / 2**20, "base_mb": base / 2**20}


def probe(name: str, size) -> None:
    device = torch.device("cpu")
    setup = Setup(name, size, 1, device)
    before = status_mb("VmRSS")
    setup.step(*setup.warm)
    setup.step(*setup.data[0])
    peak = status_mb("VmHWM")
    print(json.dumps({"peak_mb": peak, "growth_mb": peak - before}))


def bench_size(names, size, steps: int, rounds: int, device, threads) -> dict:
    setups = {}
    mem = {n: {} for n in names}
    for n in names:
        setups[n] = Setup(n, size, steps, device)
        setups[n].step(*setups[n].warm)  # warm-up: momentum buffers, kernels
        sync(device)
    times = {n: [] for n in names}
    for _ in range(rounds):
        for n in names:
            times[n].append(setups[n].timed(device))
    del setups  # every setup's memory is measured with nothing else alive
    for n in names:
        mem[n] = cuda_memory(n, size, device) if device.type == "cuda" else memory_probe(n, size, threads)
    s = {n: statistics.median(t) for n, t in times.items()}
    out = {"s_per_step": s, "memory": mem}
    ratios = {}
    for order in ("1st", "2nd"):
        if order in s and f"plain-{order}" in s:
            plain, fast = f"plain-{order}", order
            ratios[order] = {"speedup": s[plain] / s[fast],
                             "peak_ratio": mem[fast]["peak_mb"] / mem[plain]["peak_mb"]}
            if "growth_mb" in mem[fast]:
                ratios[order]["growth_ratio"] = mem[fast]["growth_mb"] / max(mem[plain]["growth_mb"], 1e-9)
    out["fast_vs_plain"] = ratios
    if "1st" in s:
        out["ratio_vs_1st"] = {n: s[n] / s["1st"] for n in names}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setup and round")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of every setup in turn; the median counts")
    ap.add_argument("--sizes", default="tiny,paper", help="comma-separated: tiny, paper, CxLAYERSxBATCHxSIDE")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    ap.add_argument("--variants", default="", help=f"also time these (fast path): all or of {', '.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # internal: one memory probe
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as the nash CLI does at process start
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [parse_size(t.strip()) for t in args.sizes.split(",") if t.strip()]
    if args.probe:
        return probe(args.probe, sizes[0][1])
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    names += list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in PATHS + VARIANTS]
    if unknown:
        raise SystemExit(f"unknown paths/variants {unknown}: use {', '.join(PATHS + VARIANTS)}")
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{torch.get_num_threads()} threads"
    print(f"device {device} ({name_of_device}), torch {torch.__version__}, "
          f"{args.rounds} rounds x {args.steps} timed steps per setup")
    mem_label = "peak alloc MB" if device.type == "cuda" else "peak RSS MB"
    header = f"{'size':<10} {'C':>3} {'cells':>5} {'batch':>5} {'side':>4}  {'path':<10} {'s/step':>9} " \
             f"{mem_label:>13} {'+MB':>8}"
    print(header)
    print("-" * len(header))
    results = {}
    for label, size in sizes:
        r = results[label] = bench_size(names, size, args.steps, args.rounds, device, args.threads)
        for n in names:
            m = r["memory"][n]
            print(f"{label:<10} {size[0]:>3} {size[1]:>5} {size[2]:>5} {size[3]:>4}  {n:<10} "
                  f"{r['s_per_step'][n]:>9.4f} {m.get('peak_mb', float('nan')):>13.1f} {m.get('growth_mb', float('nan')):>8.1f}")
    print()
    for label, r in results.items():
        for order, q in r["fast_vs_plain"].items():
            growth = f", step memory {q['growth_ratio']:.2f}x" if "growth_ratio" in q else ""
            print(f"{label}: {order} order: fast is {q['speedup']:.2f}x faster than plain, "
                  f"peak memory {q['peak_ratio']:.2f}x of plain{growth}")
        extra = [n for n in names if n in VARIANTS or n == "2nd"]
        if "ratio_vs_1st" in r and extra:
            print(f"{label}: step time relative to fast first order: "
                  + ", ".join(f"{n} {r['ratio_vs_1st'][n]:.2f}x" for n in extra))
    print(json.dumps({"device": str(device), "device_name": name_of_device, "torch": torch.__version__,
                      "rounds": args.rounds, "steps": args.steps,
                      "sizes": {label: {"size": dict(zip(("channels", "cells", "batch", "side"), size)), **results[label]}
                                for label, size in sizes}}))


if __name__ == "__main__":
    main()
