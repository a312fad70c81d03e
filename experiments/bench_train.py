"""Benchmark sgdr_train against a plain PyTorch training loop on the same data and network.

The plain loop is what most NAS code does: a Dataset that augments one sample at a time
(pad-and-crop shift, flip) in Python, a DataLoader that collates batches, fp32, NCHW. nash's
sgdr_train keeps the whole set on the device as one tensor, augments whole batches with tensor
ops, and uses channels_last + bf16 autocast on CUDA. Same network, same optimiser settings,
same number of epochs; printed as images/second and their ratio, measured in this one run.

    python experiments/bench_train.py [--data digits|random32|cifar10] [--data-dir DIR] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from morphisms import start_net
from nash.data import Augment, load_dataset
from nash.train import cosine_lr, param_groups, sgdr_train


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


def plain_train(net, x, y, epochs, aug, device, batch_size=128, lr_start=0.05, lr_end=0.0, workers=0):
    loader = DataLoader(PerSampleAugment(x.cpu(), y.cpu(), aug), batch_size=batch_size, shuffle=True,
                        drop_last=True, num_workers=workers)
    net.to(device).train()
    opt = torch.optim.SGD(param_groups(net, 5e-4), lr=lr_start, momentum=0.9)
    total, step, images = epochs * len(loader), 0, 0
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
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits, random32 (10k random 3x32x32 images) or a nash data set")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--widths", default="64,128,256")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the plain loop")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
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
    # warm-up both paths once (allocator, kernels), then measure
    sgdr_train(copy.deepcopy(net), x[:512].to(device), y[:512].to(device), 1, aug=aug)
    plain_train(copy.deepcopy(net), x[:512], y[:512], 1, aug, device, workers=args.workers)
    xd, yd = x.to(device), y.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours = sgdr_train(copy.deepcopy(net), xd, yd, args.epochs, aug=aug)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours_ips = ours.images / ours.seconds
    plain_ips = plain_train(copy.deepcopy(net), x, y, args.epochs, aug, device, workers=args.workers)
    print(f"data {args.data} {tuple(x.shape)}, net {net.num_params():,} params, {args.epochs} epochs, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"sgdr_train (tensors on device, batch augmentation{', channels_last + bf16' if device.type == 'cuda' else ''}): "
          f"{ours_ips:10.0f} images/s")
    print(f"plain loop (DataLoader, per-sample augmentation, fp32 NCHW, {args.workers} workers): {plain_ips:10.0f} images/s")
    print(f"ratio sgdr_train / plain: {ours_ips / plain_ips:.2f}x")


if __name__ == "__main__":
    torch.set_flush_denormal(True)  # as the nash CLI does at process start (both paths alike)
    main()
