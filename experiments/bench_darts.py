"""Benchmark: seconds per DARTS search step (alpha step + weight step) and peak memory, first
vs second order, side by side in one process.

    python experiments/bench_darts.py                       # tiny and paper sizes, CPU
    python experiments/bench_darts.py --device cuda --steps 20 --sizes paper
    python experiments/bench_darts.py --sizes 8x5x32x16     # channels x cells x batch x image side

Sizes: tiny = 4 channels, 5 cells, batch 16, 16x16; paper = the DARTS search setting, 16
channels, 8 cells, batch 64, 32x32 (random data: only the shapes matter). Each (size, order)
gets a fresh seeded supernet, one untimed warm-up step, then --steps timed steps of the real
search step (`nash.darts.search.search_step`).

Memory: on CUDA the peak allocated by torch during the timed steps
(torch.cuda.max_memory_allocated after a reset). On CPU there is no allocator counter, so it is
the growth of the process's peak resident set (getrusage ru_maxrss) over its value before the
size's first supernet was built (after one throwaway step, so library start-up is not counted); first order runs before second order, so each figure is the
high-water mark that order needed (second order needs more, so its figure is not masked).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nash.darts.architect import FirstOrder, SecondOrder  # noqa: E402
from nash.darts.search import search_step  # noqa: E402
from nash.darts.supernet import Supernet  # noqa: E402

PRESETS = {"tiny": (4, 5, 16, 16), "paper": (16, 8, 64, 32)}


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


def bench(size, order_cls, steps, device, base_rss):
    C, layers, batch, side = size
    torch.manual_seed(0)
    net = Supernet(C, 10, layers, 3).to(device)
    w_opt = torch.optim.SGD(net.weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    strategy = order_cls(net)
    g = torch.Generator(device=device).manual_seed(0)

    def batch_pair():
        x = torch.randn(2 * batch, 3, side, side, generator=g, device=device)
        y = torch.randint(0, 10, (2 * batch,), generator=g, device=device)
        return (x[:batch], y[:batch]), (x[batch:], y[batch:])

    search_step(net, strategy, w_opt, *batch_pair(), 0.025, 5.0)  # warm-up: momentum buffers, kernels
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    data = [batch_pair() for _ in range(steps)]
    sync(device)
    t0 = time.perf_counter()
    for train, val in data:
        search_step(net, strategy, w_opt, train, val, 0.025, 5.0)
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss_mb() - base_rss
    return seconds, mem


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per (size, order)")
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
    mem_label = "peak alloc MB" if device.type == "cuda" else "peak RSS +MB"
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, {args.steps} timed steps each")
    header = f"{'size':<8} {'C':>3} {'cells':>5} {'batch':>5} {'side':>4}  {'order':<5} {'s/step':>8} {mem_label:>13}"
    print(header)
    print("-" * len(header))
    ratios = []
    # one throwaway step first, so library start-up (thread pools, kernel caches) is not billed
    # to the first size's memory
    bench((2, 3, 2, 8), FirstOrder, 1, device, 0.0)
    for name, size in sizes:
        base = rss_mb()
        (t1, m1) = bench(size, FirstOrder, args.steps, device, base)
        (t2, m2) = bench(size, SecondOrder, args.steps, device, base)
        for order, t, m in (("1st", t1, m1), ("2nd", t2, m2)):
            print(f"{name:<8} {size[0]:>3} {size[1]:>5} {size[2]:>5} {size[3]:>4}  {order:<5} {t:>8.3f} {m:>13.1f}")
        ratios.append((name, t2 / t1, m2 / m1 if m1 > 0 else float("nan")))
    print()
    for name, rt, rm in ratios:
        print(f"{name}: 2nd/1st order time ratio {rt:.2f}x, memory ratio {rm:.2f}x")


if __name__ == "__main__":
    main()
