"""Benchmark: how much of a climb step is not training, at the paper's settings.

Runs a real climb (`nash.search.run_searcher("nash", ...)`, the paper schedule: 8 candidates, 5
random morphisms each, 17 epochs per candidate) for --steps steps and times, inside each step,
every piece of work that is not the candidates' training: copying the parent, applying the
morphisms (with the child's calibration on one batch), evaluating the candidates on the
validation split, writing events and the checkpoint. The timers wrap the functions the climber
calls (for this process only; nothing in nash changes), and a step's overhead is its wall time
minus its candidates' training time.

    python experiments/bench_climb.py                            # digits, 1 step
    python experiments/bench_climb.py --data cifar10 --data-dir DIR --subset 5000 --device cuda
    python experiments/bench_climb.py --data random32 --subset 5000 --device cuda   # CIFAR-sized, no files

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nash.search.climb as climb  # noqa: E402
import nash.search.jobs as jobs  # noqa: E402
from nash.allocator import keep_freed_memory  # noqa: E402
from nash.data import Augment, DataSplits  # noqa: E402
from nash.rundir import RunDir  # noqa: E402
from nash.search import ClimbConfig, run_searcher  # noqa: E402

clock: dict = defaultdict(float)
in_step = [False]


def timed(name: str, fn):
    """fn, with the seconds it takes inside a climb step added to clock[name]."""
    def wrapper(*args, **kwargs):
        if not in_step[0]:
            return fn(*args, **kwargs)
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[name] += time.perf_counter() - t
    return wrapper


def instrument():
    """Wrap what a step does; return the list that collects each step's wall time."""
    steps = []
    climb.random_morphisms = timed("morphisms (apply + calibrate)", climb.random_morphisms)
    # climb.py calls copy.deepcopy only to copy the parent into its candidate list
    climb.copy = type("copy_module", (), {"deepcopy": staticmethod(timed("copy parent", copy.deepcopy))})
    jobs.sgdr_train = timed("training", jobs.sgdr_train)
    jobs.evaluate = timed("evaluation", jobs.evaluate)
    RunDir.save_checkpoint = timed("checkpoint", RunDir.save_checkpoint)
    RunDir.event = timed("events", RunDir.event)
    candidates = climb.HillClimber._candidates

    def run_candidates(self, *a, **k):
        in_step[0] = True
        steps.append(-time.perf_counter())
        return candidates(self, *a, **k)

    save = RunDir.save_checkpoint

    def save_and_close(self, state, *a, **k):
        """A step ends with the checkpoint that follows it (search(): _candidates, _step, save)."""
        out = save(self, state, *a, **k)
        if in_step[0] and steps and steps[-1] < 0:
            steps[-1] += time.perf_counter()
            in_step[0] = False
        return out

    climb.HillClimber._candidates = run_candidates
    RunDir.save_checkpoint = save_and_close
    return steps


def random32(n: int, device: str) -> DataSplits:
    """n random 3x32x32 training images (and n // 10 each for validation and test), 10 classes:
    CIFAR-sized work for timing; the accuracies mean nothing."""
    g = torch.Generator().manual_seed(0)
    total = n + 2 * (n // 10)
    x = torch.randn(total, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (total,), generator=g).to(device)
    v = n + n // 10
    return DataSplits("random32", x[:n], y[:n], x[n:v], y[n:v], x[v:], y[v:], 3, 10, (32, 32), (0.0,) * 3,
                      (1.0,) * 3, Augment(pad=4, flip=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits", help="a nash data set, or random32 (random CIFAR-sized images)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--epoch-neigh", type=int, default=17, help="epochs per candidate (paper: 17)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = instrument()
    synthetic = args.data == "random32"
    cfg = ClimbConfig(data="digits" if synthetic else args.data, data_dir=args.data_dir, subset=args.subset,
                      device=args.device, schedule="paper", steps=args.steps, epoch_neigh=args.epoch_neigh,
                      pretrain_epochs=1, epoch_final=0)
    data = random32(args.subset or 10_000, args.device) if synthetic else None
    with tempfile.TemporaryDirectory() as tmp:
        run_searcher("nash", cfg, out=Path(tmp) / "run", data=data)
    wall = sum(steps)
    parts = dict(clock)
    overhead = wall - parts.get("training", 0.0)
    print(f"climb on {args.data}, device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads: "
          f"{len(steps)} steps of 8 candidates x 5 morphisms x {args.epoch_neigh} epochs, {wall:.1f} s in all")
    print(f"{'part of the steps':<32} {'seconds':>9} {'share':>7}")
    for name in ("training", "evaluation", "morphisms (apply + calibrate)", "copy parent", "checkpoint", "events"):
        v = parts.get(name, 0.0)
        print(f"{name:<32} {v:>9.2f} {v / wall:>7.1%}")
    other = wall - sum(parts.values())
    print(f"{'other (bookkeeping, progress)':<32} {other:>9.2f} {other / wall:>7.1%}")
    print(f"overhead outside training: {overhead / wall:.1%} of the step time")
    print(json.dumps({"data": args.data, "device": args.device, "torch": torch.__version__, "steps": len(steps),
                      "epoch_neigh": args.epoch_neigh, "step_seconds": steps, "seconds": parts, "other": other,
                      "overhead_share": overhead / wall}))


if __name__ == "__main__":
    torch.set_flush_denormal(True)  # as the nash CLI does at process start
    keep_freed_memory()
    main()
