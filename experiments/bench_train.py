"""Benchmark sgdr_train against a plain PyTorch training loop on the same data and network, and
show where a training step's time goes on each path.

The plain loop is what most NAS code does: a Dataset that augments one sample at a time
(pad-and-crop shift, flip) in Python, a DataLoader that collates batches, fp32, NCHW. nash's
sgdr_train keeps the whole set on the device as one tensor, augments whole batches with tensor
ops, trains in channels_last (and bf16 autocast on CUDA) and syncs with the host once per epoch.
Same network, same optimiser settings, same images per step, same number of epochs; printed as
images/second and their ratio, measured in this one run (the paths alternate, --rounds times,
and the median counts).

The breakdown times --profile-steps steps of each path phase by phase (data: batch, augmentation,
copy to the device; forward with the loss; backward; optimizer: learning rate, zero_grad, step;
metrics), synchronising the device between phases, so its total is a little above a real step.
A third column runs nash's step in NCHW, which isolates what channels_last buys.

    python experiments/bench_train.py [--data digits|random32|cifar10] [--data-dir DIR] [--device cpu|cuda]

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morphisms import start_net  # noqa: E402
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
    """Milliseconds per step in each phase over `steps` steps. path: plain | nash | nash-nchw."""
    clock = {p: 0.0 for p in PHASES}
    channels_last = path == "nash"
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits, random32 (10k random 3x32x32 images) or a nash data set")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of both paths; the median counts")
    ap.add_argument("--profile-steps", type=int, default=20)
    ap.add_argument("--widths", default="64,128,256")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the plain loop")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true",
                    help="also time nash's step on torch.compile(net): compile seconds and steps to pay them back")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data == "random32":
        g = torch.Generator().manual_seed(0)
        x = torch.randn(10_000, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (10_000,), generator=g)
        aug = Augment(pad=4, flip=True)
        shape, classes = (3, 32, 32), 10
    else:
        d = load_dataset(args.data, data_dir=args.data_dir, subset=args.subset)
        x, y, aug = d.train_x, d.train_y, d.augment
        shape, classes = (d.in_channels, *d.image_size), d.num_classes
    torch.manual_seed(0)
    net = start_net(shape[0], classes, tuple(int(w) for w in args.widths.split(",")), shape[1:])
    xd, yd = x.to(device), y.to(device)
    # warm-up both paths once (allocator, kernels), then measure, alternating
    nash_train(copy.deepcopy(net), xd[:512], yd[:512], 1, aug)
    plain_train(copy.deepcopy(net), x[:512], y[:512], 1, aug, device, workers=args.workers)
    ours, plain = [], []
    for _ in range(args.rounds):
        ours.append(nash_train(copy.deepcopy(net), xd, yd, args.epochs, aug))
        plain.append(plain_train(copy.deepcopy(net), x, y, args.epochs, aug, device, workers=args.workers))
    ours_ips, plain_ips = statistics.median(ours), statistics.median(plain)
    parts = {p: breakdown(p, copy.deepcopy(net), x, y, aug, device, args.profile_steps, workers=args.workers)
             for p in ("plain", "nash", "nash-nchw")}
    print(f"data {args.data} {tuple(x.shape)}, net {net.num_params():,} params, {args.epochs} epochs x "
          f"{args.rounds} rounds, device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"sgdr_train (tensors on device, batch augmentation, channels_last"
          f"{' + bf16' if device.type == 'cuda' else ''}): {ours_ips:10.0f} images/s")
    print(f"plain loop (DataLoader, per-sample augmentation, fp32 NCHW, {args.workers} workers): {plain_ips:10.0f} images/s")
    print(f"ratio sgdr_train / plain: {ours_ips / plain_ips:.2f}x")
    print()
    print(f"where a step's time goes, ms/step over {args.profile_steps} steps (phases synchronised):")
    print(f"{'phase':<10} {'plain':>9} {'nash':>9} {'nash NCHW':>10}")
    for phase in PHASES + ("total",):
        row = [sum(parts[p].values()) if phase == "total" else parts[p][phase] for p in ("plain", "nash", "nash-nchw")]
        print(f"{phase:<10} {row[0]:>9.2f} {row[1]:>9.2f} {row[2]:>10.2f}")
    total = {p: sum(v.values()) for p, v in parts.items()}
    print(f"channels_last alone: {total['nash-nchw'] / total['nash']:.2f}x per step")
    compiled = None
    if args.compile:
        cnet = torch.compile(copy.deepcopy(net).to(device=device, memory_format=torch.channels_last))
        xb = x[:128].to(device).contiguous(memory_format=torch.channels_last)
        sync(device)
        t = time.perf_counter()
        with autocast_for(device):
            F.cross_entropy(cnet(xb).float(), y[:128].to(device)).backward()  # compiles forward and backward
        sync(device)
        compile_s = time.perf_counter() - t
        step_ms = sum(breakdown("nash", cnet, x, y, aug, device, args.profile_steps).values())
        gain = total["nash"] - step_ms
        compiled = {"compile_s": compile_s, "ms_per_step": step_ms,
                    "pays_back_after_steps": compile_s * 1000 / gain if gain > 0 else None}
        print(f"torch.compile: {compile_s:.1f} s to compile, {step_ms:.2f} ms/step against {total['nash']:.2f} eager: "
              + (f"pays back after {compiled['pays_back_after_steps']:.0f} steps" if gain > 0 else "never pays back"))
    print(json.dumps({"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "data": args.data, "params": net.num_params(), "epochs": args.epochs, "rounds": args.rounds,
                      "images_per_s": {"sgdr_train": ours_ips, "plain": plain_ips},
                      "ratio": ours_ips / plain_ips, "ms_per_step": parts,
                      "channels_last_ratio": total["nash-nchw"] / total["nash"], "compiled": compiled}))


if __name__ == "__main__":
    torch.set_flush_denormal(True)  # as the nash CLI does at process start (both paths alike)
    main()
