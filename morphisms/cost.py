"""What a network costs: parameters and MACs (counted), latency (measured, cached).

    costs(net)                                   # {"params": ..., "macs": ...}: exact, free
    measure_latency(net, "cpu", batch_size=1)    # ms per batch: median of timed runs
    cache = LatencyCache()                       # one per search; a plain dict in its checkpoint
    cache.latency(net, "cpu", batch_size=1)      # measured once per (architecture, device, batch, threads)
    state["latency"] = cache.to_dict();  LatencyCache.from_dict(state["latency"])

Counts are functions of the architecture. A measured time is not reproducible (the machine's
load, its clocks), so a search decides on a latency once and remembers it: the same
architecture measures the same number for the rest of the search and after a resume, whatever
its weights. Measuring runs the network (eval mode, no_grad, on a copy): it never trains.
"""
from __future__ import annotations

import copy
import hashlib
import json
import statistics
import time

import torch

WARMUP = 5  # runs before timing: the allocator, cuDNN's algorithm choice, the caches
REPEATS = 20


def costs(net) -> dict:
    """{"params", "macs"} of a network: parameters and multiply-accumulates per input."""
    return {"params": net.num_params(), "macs": net.macs()}


def architecture_fingerprint(net) -> str:
    """A digest of a network's graph (layers, hyper-parameters, edges), not of its weights."""
    text = json.dumps(net.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def measure_latency(net, device="cpu", batch_size: int = 1, threads: int | None = None, warmup: int = WARMUP,
                    repeats: int = REPEATS) -> float:
    """Milliseconds one forward pass of `batch_size` inputs takes on `device` (cpu, cuda,
    cuda:1, ...): the median of `repeats` timed runs after `warmup` untimed ones, in eval mode
    under no_grad, on a copy of `net` (the network itself is left as it was, where it was).
    `threads`: torch's CPU threads while measuring (None: as many as now), restored after."""
    device = torch.device(device)
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"batch_size and repeats must be at least 1, warmup at least 0 "
                         f"(got {batch_size}, {repeats}, {warmup})")
    model = copy.deepcopy(net).to(device).eval()
    # fixed inputs: no draw from torch's global generator
    x = torch.randn(batch_size, *net.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    cuda = device.type == "cuda"
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        times = []
        with torch.no_grad():
            for k in range(warmup + repeats):
                if cuda:  # kernels run asynchronously: time from an idle GPU to an idle GPU
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                model(x)
                if cuda:
                    torch.cuda.synchronize(device)
                if k >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times) * 1000.0


class LatencyCache:
    """Latencies measured once per (architecture fingerprint, device type, batch size, thread
    count), kept in a plain dict of str -> float that a checkpoint stores as it is.

    `entries` may be a dict the caller keeps (e.g. inside a checkpoint's state): it is used,
    not copied, so whatever measures here lands there."""

    def __init__(self, entries: dict | None = None):
        self.entries = {} if entries is None else entries

    @staticmethod
    def key(net, device="cpu", batch_size: int = 1, threads: int | None = None) -> str:
        threads = torch.get_num_threads() if threads is None else threads
        return f"{architecture_fingerprint(net)}/{torch.device(device).type}/b{batch_size}/t{threads}"

    def latency(self, net, device="cpu", batch_size: int = 1, threads: int | None = None, **measure) -> float:
        """The cached milliseconds per batch for `net`'s architecture, else measured now
        (`measure`: warmup, repeats) and remembered."""
        k = self.key(net, device, batch_size, threads)
        if k not in self.entries:
            self.entries[k] = float(measure_latency(net, device, batch_size, threads, **measure))
        return self.entries[k]

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def to_dict(self) -> dict:
        return dict(self.entries)

    @classmethod
    def from_dict(cls, entries: dict | None) -> "LatencyCache":
        return cls({str(k): float(v) for k, v in (entries or {}).items()})
