"""Benchmark sgdr_train against a plain PyTorch training loop on the same data and network, and
show where a training step's time goes on each path.

The plain loop is what most NAS code does: a Dataset that augments one sample at a time
(pad-and-crop shift, flip) in Python, a DataLoader that collates batches, fp32, NCHW. nash's
sgdr_train keeps the whole set on the device as one tensor, augments whole batches with tensor
ops, trains in channels_last (and bf16 autocast on CUDA) and syncs with the host once per epoch;
the nash CLI also keeps the memory each step frees for the next (nash/allocator.py). Same
network, same optimiser settings, same images per step, same number of epochs; printed as
images/second and their ratio, measured in this one run. Each measurement runs in a fresh
process (malloc's settings are process-wide, and the plain loop gets glibc's defaults as other
code does); the paths alternate, --rounds times, and the median counts. 'nash-glibc' is
sgdr_train in a process that left malloc alone, which isolates what keeping freed memory buys.

The breakdown times --profile-steps steps of each path phase by phase (data: batch, augmentation,
copy to the device; forward with the loss; backward; optimizer: learning rate, zero_grad, step;
metrics), synchronising the device between phases, so its total is a little above a real step.
A column runs nash's step in NCHW, which isolates what channels_last buys.

    python experiments/bench_train.py [--data digits|random32|cifar10] [--data-dir DIR] [--device cpu|cuda]

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morphisms import start_net  # noqa: E402
from nash.allocator import OPT_OUT, keep_freed_memory, kept  # noqa: E402
from nash.data import Augment, iterate_batches, load_dataset  # noqa: E402
from nash.train import autocast_for, cosine_lr, param_groups, sgdr_train  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer", "metrics")


class PerSampleAugment(Dataset):
    """The usual per-sample path: index, pad, crop at a random offset, maybe flip, one at a time."""

    def __init__(self, x, y, aug: Augment):
        self.x, self.y, self.aug = x, y, aug

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        img = self.x[i]
        p = self.aug.pad
        if p:
            padded = F.pad(img, (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
            img = padded[:, dy:dy + img.shape[1], dx:dx + img.shape[2]]
        if self.aug.flip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        return img, self.y[i]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_batches(x, y, aug, batch_size, workers):
    return DataLoader(PerSampleAugment(x.cpu(), y.cpu(), aug), batch_size=batch_size, shuffle=True,
                      drop_last=True, num_workers=workers)


def plain_train(net, x, y, epochs, aug, device, batch_size=128, lr_start=0.05, lr_end=0.0, workers=0):
    """The plain loop; returns images/second."""
    loader = plain_batches(x, y, aug, batch_size, workers)
    net.to(device).train()
    opt = torch.optim.SGD(param_groups(net, 5e-4), lr=lr_start, momentum=0.9)
    total, step, images = epochs * len(loader), 0, 0
    sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, lr_start, lr_end)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            images += xb.shape[0]
    sync(device)
    return images / (time.perf_counter() - t)


def nash_train(net, x, y, epochs, aug):
    """sgdr_train itself; returns images/second."""
    sync(x.device)
    res = sgdr_train(net, x, y, epochs, aug=aug)
    sync(x.device)
    return res.images / res.seconds


def breakdown(path: str, net, x, y, aug, device, steps: int, batch_size=128, workers=0) -> dict:
    """Milliseconds per step in each phase over `steps` steps. path: plain | nash | nash-nchw |
    nash-glibc (the process decides malloc's settings)."""
    clock = {p: 0.0 for p in PHASES}
    channels_last = path != "nash-nchw" and path != "plain"
    net.to(device).train()
    if channels_last:
        net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(param_groups(net, 5e-4), lr=0.05, momentum=0.9)
    if path == "plain":
        batches = iter(plain_batches(x, y, aug, batch_size, workers))
    else:
        xd, yd = x.to(device), y.to(device)
        batches = iterate_batches(xd, yd, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
                                  aug=aug, drop_last=True)
    loss_sum = correct = 0.0
    done = 0
    while done < steps:
        sync(device)
        t = time.perf_counter()
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(plain_batches(x, y, aug, batch_size, workers)) if path == "plain" else \
                iterate_batches(xd, yd, batch_size, shuffle=True, aug=aug, drop_last=True)
            continue
        xb, yb = xb.to(device), yb.to(device)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        sync(device)
        t1 = time.perf_counter()
        with autocast_for(device) if path != "plain" else torch.autocast(device.type, enabled=False):
            out = net(xb).float()
            loss = F.cross_entropy(out, yb)
        sync(device)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        t3 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = cosine_lr(done, steps, 0.05, 0.0)
        opt.step()
        sync(device)
        t4 = time.perf_counter()
        if path != "plain":  # nash's running metrics, on the device
            loss_sum += loss.detach() * xb.shape[0]
            correct += (out.detach().argmax(1) == yb).sum()
        sync(device)
        t5 = time.perf_counter()
        for phase, dt in zip(PHASES, (t1 - t, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            clock[phase] += dt
        done += 1
    return {p: 1000 * v / steps for p, v in clock.items()}


PATHS = ("plain", "nash", "nash-glibc")  # timed end to end, one process each per round
PARTS = ("plain", "nash", "nash-nchw", "nash-glibc")  # broken down phase by phase


def load(args):
    """(x, y, aug, input shape, classes), the same in every process."""
    if args.data == "random32":
        g = torch.Generator().manual_seed(0)
        x = torch.randn(10_000, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (10_000,), generator=g)
        return x, y, Augment(pad=4, flip=True), (3, 32, 32), 10
    d = load_dataset(args.data, data_dir=args.data_dir, subset=args.subset)
    return d.train_x, d.train_y, d.augment, (d.in_channels, *d.image_size), d.num_classes


def worker(args) -> dict:
    """One measurement in this process: `--worker PATH` times PATH end to end, `--worker
    parts:PATH` breaks PATH's step down, `--worker compile` times torch.compile."""
    kind, _, path = args.worker.partition(":")
    path = path or kind
    if path not in ("plain", "nash-glibc"):
        keep_freed_memory()  # as the nash CLI does at process start
    device = torch.device(args.device)
    x, y, aug, shape, classes = load(args)
    torch.manual_seed(0)
    net = start_net(shape[0], classes, tuple(int(w) for w in args.widths.split(",")), shape[1:])
    out = {"params": net.num_params(), "threads": torch.get_num_threads(), "kept": kept()}
    if kind == "parts":
        out["ms"] = breakdown(path, net, x, y, aug, device, args.profile_steps, workers=args.workers)
    elif kind == "compile":
        eager = sum(breakdown("nash", copy.deepcopy(net), x, y, aug, device, args.profile_steps).values())
        cnet = torch.compile(net.to(device=device, memory_format=torch.channels_last))
        t = time.perf_counter()
        # the first steps compile the forward and backward, and recompile what the optimizer's
        # first step and the data's strides change; all of it counts as compile time
        breakdown("nash", cnet, x, y, aug, device, 3)
        compile_s = time.perf_counter() - t - 3 * eager / 1000
        step_ms = sum(breakdown("nash", cnet, x, y, aug, device, args.profile_steps).values())
        gain = eager - step_ms
        out.update(compile_s=compile_s, ms_per_step=step_ms, eager_ms_per_step=eager,
                   pays_back_after_steps=compile_s * 1000 / gain if gain > 0 else None)
    elif path == "plain":
        plain_train(copy.deepcopy(net), x[:512], y[:512], 1, aug, device, workers=args.workers)  # warm-up
        out["images_per_s"] = plain_train(net, x, y, args.epochs, aug, device, workers=args.workers)
    else:
        xd, yd = x.to(device), y.to(device)
        nash_train(copy.deepcopy(net), xd[:512], yd[:512], 1, aug)  # warm-up
        out["images_per_s"] = nash_train(net, xd, yd, args.epochs, aug)
    return out


def run_worker(argv: list[str], what: str) -> dict:
    env = dict(os.environ)
    if what.endswith("glibc"):
        env[OPT_OUT] = "0"
    cmd = [sys.executable, __file__, *argv, "--worker", what]
    with tempfile.TemporaryDirectory() as cache:
        # an empty inductor cache: a climb's every candidate is an architecture compiled cold
        env["TORCHINDUCTOR_CACHE_DIR"] = cache
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"bench_train: the {what} worker failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits, random32 (10k random 3x32x32 images) or a nash data set")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of the paths; the median counts")
    ap.add_argument("--profile-steps", type=int, default=20)
    ap.add_argument("--widths", default="64,128,256")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the plain loop")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true",
                    help="also time nash's step on torch.compile(net): compile seconds and steps to pay them back")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    # every measurement in a fresh process: malloc's settings are process-wide, and the plain
    # loop must run with glibc's defaults, as other code does
    # malloc's settings concern host memory: on a GPU the glibc path only costs device time
    glibc = torch.device(args.device).type == "cpu"
    paths = PATHS if glibc else PATHS[:2]
    runs = {p: [] for p in paths}
    for r in range(args.rounds):
        for p in (paths if r % 2 == 0 else paths[::-1]):
            runs[p].append(run_worker(argv, p))
    ips = {p: statistics.median(v["images_per_s"] for v in runs[p]) for p in paths}
    parts = {p: run_worker(argv, f"parts:{p}")["ms"] for p in (PARTS if glibc else PARTS[:3])}
    info = runs["nash"][0]
    device = torch.device(args.device)
    print(f"data {args.data}, net {info['params']:,} params, {args.epochs} epochs x {args.rounds} rounds, "
          f"device {device}, torch {torch.__version__}, {info['threads']} threads, one process per run")
    print(f"sgdr_train (tensors on device, batch augmentation, channels_last"
          f"{' + bf16' if device.type == 'cuda' else ''}, freed memory kept: {info['kept']}): "
          f"{ips['nash']:10.0f} images/s")
    if glibc:
        print(f"sgdr_train with glibc's malloc defaults:                  {ips['nash-glibc']:10.0f} images/s")
    print(f"plain loop (DataLoader, per-sample augmentation, fp32 NCHW, {args.workers} workers): {ips['plain']:10.0f} images/s")
    print(f"ratio sgdr_train / plain: {ips['nash'] / ips['plain']:.2f}x"
          + (f" (with glibc's defaults: {ips['nash-glibc'] / ips['plain']:.2f}x)" if glibc else ""))
    print()
    print(f"where a step's time goes, ms/step over {args.profile_steps} steps (phases synchronised):")
    print(f"{'phase':<10} " + " ".join(f"{p:>10}" for p in parts))
    for phase in PHASES + ("total",):
        row = [sum(v.values()) if phase == "total" else v[phase] for v in parts.values()]
        print(f"{phase:<10} " + " ".join(f"{v:>10.2f}" for v in row))
    total = {p: sum(v.values()) for p, v in parts.items()}
    print(f"channels_last alone: {total['nash-nchw'] / total['nash']:.2f}x per step"
          + (f"; keeping freed memory alone: {total['nash-glibc'] / total['nash']:.2f}x per step" if glibc else ""))
    compiled = None
    if args.compile:
        compiled = run_worker(argv, "compile")
        print(f"torch.compile: {compiled['compile_s']:.1f} s to compile, {compiled['ms_per_step']:.2f} ms/step against "
              f"{compiled['eager_ms_per_step']:.2f} eager: "
              + (f"pays back after {compiled['pays_back_after_steps']:.0f} steps"
                 if compiled["pays_back_after_steps"] else "never pays back"))
    print(json.dumps({"device": str(device), "torch": torch.__version__, "threads": info["threads"],
                      "data": args.data, "params": info["params"], "epochs": args.epochs, "rounds": args.rounds,
                      "images_per_s": {"sgdr_train": ips["nash"], "sgdr_train_glibc": ips.get("nash-glibc"),
                                       "plain": ips["plain"]},
                      "ratio": ips["nash"] / ips["plain"], "ratio_glibc_defaults": ips["nash-glibc"] / ips["plain"] if glibc else None,
                      "ms_per_step": parts, "channels_last_ratio": total["nash-nchw"] / total["nash"],
                      "keep_freed_memory_ratio": total["nash-glibc"] / total["nash"] if glibc else None,
                      "compiled": compiled}))


if __name__ == "__main__":
    torch.set_flush_denormal(True)  # as the nash CLI does at process start (every path alike)
    main()
