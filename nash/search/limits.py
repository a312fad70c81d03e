"""Cost limits of a search: no network over a limit is trained, so the result is within them.

    class MyConfig(CostLimitsConfig): ...          # --max-params, --max-macs, --max-latency-ms,
                                                   # --latency-device, --latency-batch; start net checked
    limits = Limits.of(cfg)                        # the limits a config sets (falsy: none)
    cache = LatencyCache(state.setdefault("latency", {}))   # measured once, kept in the checkpoint
    c = limits.measure(net, cache, device)         # {"params", "macs"[, "latency_ms"]}
    limits.over(c)                                 # ["372,682 parameters, over --max-params 200k", ...]
    random_morphisms(..., max_macs=limits.macs_cap(cap), max_params=limits.max_params)

Parameters and MACs are counted, so a searcher keeps a move that would exceed them from being
drawn at all (random_morphisms redraws it). Latency is measured on the finished network, so a
network over it is dropped and another drawn from a seed derived from the first
(`retry_seed`), a bounded number of times. A measured figure is not reproducible: the cache
(morphisms.cost.LatencyCache) fixes it per architecture for the rest of the run and after a
resume.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from morphisms import LatencyCache

from ..errors import OptionError
from ..units import UnitsError, format_count, parse_count, parse_ms
from .contract import StartNetConfig

LATENCY_DEVICES = ("cpu", "cuda")
# draws of one child under a latency limit before the step goes on with fewer children: each
# draw costs a latency measurement, and a parent whose every child is too slow stays too slow
LATENCY_TRIES = 4


@dataclass
class CostLimitsConfig(StartNetConfig):
    """A start-net searcher whose networks must stay within cost limits (nash, pareto)."""
    max_params: int | None = field(default=None, metadata={
        "help": "No network with more parameters is trained: 200k, 1.5M, 250000.", "parse": parse_count,
        "metavar": "N"})
    max_macs: int | None = field(default=None, metadata={
        "help": "No network with more multiply-accumulates per input is trained: 20M, 1.5G.", "parse": parse_count,
        "metavar": "N"})
    max_latency_ms: float | None = field(default=None, metadata={
        "help": "No network slower than this is trained: milliseconds per batch of --latency-batch inputs on "
                "--latency-device, measured once per architecture.", "parse": parse_ms, "metavar": "MS"})
    latency_device: str = field(default="cpu", metadata={
        "help": "Where --max-latency-ms is measured (cuda: the run's GPU).", "choices": LATENCY_DEVICES,
        "noun": "latency device"})
    latency_batch: int = field(default=1, metadata={"help": "Inputs per batch for --max-latency-ms."})

    def validate(self) -> None:
        super().validate()
        for name, parse in (("max_params", parse_count), ("max_macs", parse_count), ("max_latency_ms", parse_ms)):
            value = getattr(self, name)
            if isinstance(value, str):  # the Python API may write it as the command line does
                try:
                    setattr(self, name, parse(value))
                except UnitsError as e:
                    raise OptionError(f"{name}: {e}") from None
        for name in ("max_params", "max_macs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OptionError(f"{name} must be a whole count of at least 1 (or None: no limit), got {value!r}")
        if self.max_latency_ms is not None and not (isinstance(self.max_latency_ms, (int, float))
                                                    and self.max_latency_ms > 0):
            raise OptionError(f"max_latency_ms must be a positive number (or None: no limit), "
                              f"got {self.max_latency_ms!r}")
        if self.latency_device not in LATENCY_DEVICES:
            raise OptionError(f"unknown latency device {self.latency_device!r} (known: {', '.join(LATENCY_DEVICES)})")
        if self.latency_batch < 1:
            raise OptionError(f"latency_batch must be at least 1, got {self.latency_batch}")

    def check_data(self, data) -> None:
        """Also: the start net within every limit (one line naming each it exceeds)."""
        super().check_data(data)
        limits = Limits.of(self)
        if not limits:
            return
        if limits.max_latency_ms is not None and self.latency_device == "cuda" and not torch.cuda.is_available():
            raise OptionError("--latency-device cuda: CUDA is not available here (measure on --latency-device cpu)")
        from .kit import make_start_net
        net = make_start_net(self, data)
        over = limits.over(limits.measure(net, LatencyCache(), data.train_x.device))
        if over:
            hint = "start from smaller --widths" if self.start is None else "start from a smaller network"
            raise OptionError(f"the start net has {', and '.join(over)}; {hint} or raise the limit")


@dataclass(frozen=True)
class Limits:
    """The cost limits of a run (None: no limit)."""
    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None
    latency_device: str = "cpu"
    latency_batch: int = 1

    @classmethod
    def of(cls, cfg) -> "Limits":
        """The limits a config sets; a config without these fields sets none."""
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)})

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.max_params, self.max_macs, self.max_latency_ms))

    def macs_cap(self, cap: int | None) -> int | None:
        """The tighter of `cap` (e.g. a schedule's growth cap) and max_macs."""
        caps = [c for c in (cap, self.max_macs) if c is not None]
        return min(caps) if caps else None

    def device(self, run_device=None) -> torch.device:
        """Where latency is measured: the run's GPU for cuda when the run is on one."""
        run_device = torch.device(run_device) if run_device is not None else None
        if self.latency_device == "cuda" and run_device is not None and run_device.type == "cuda":
            return run_device
        return torch.device(self.latency_device)

    def measure(self, net, cache: LatencyCache, run_device=None) -> dict:
        """{"params", "macs"} of `net`, and "latency_ms" (from `cache`) where a latency limit is set."""
        out = {"params": net.num_params(), "macs": net.macs()}
        if self.max_latency_ms is not None:
            out["latency_ms"] = cache.latency(net, self.device(run_device), self.latency_batch)
        return out

    def tries(self) -> int:
        """Draws of one network before it is left out: a count limit steers the draw itself, a
        latency limit can only be checked on the finished network."""
        return LATENCY_TRIES if self.max_latency_ms is not None else 1

    def first_within(self, draw, measure):
        """The first of `tries()` draws within every limit: (drawn, costs, over), `over` the draws
        that were not [(attempt, drawn, costs)], drawn and costs None when none was.
        draw(attempt) makes a draw (a retry_seed of the attempt), measure(drawn) its costs."""
        over = []
        for attempt in range(self.tries()):
            drawn = draw(attempt)
            costs = measure(drawn)
            if not self.over(costs):
                return drawn, costs, over
            over.append((attempt, drawn, costs))
        return None, None, over

    def over(self, costs: dict) -> list[str]:
        """Each limit that `costs` (from `measure`) exceeds, as a phrase naming its option."""
        out = []
        if self.max_params is not None and costs["params"] > self.max_params:
            out.append(f"{costs['params']:,} parameters, over --max-params {format_count(self.max_params)}")
        if self.max_macs is not None and costs["macs"] > self.max_macs:
            out.append(f"{costs['macs']:,} MACs, over --max-macs {format_count(self.max_macs)}")
        if self.max_latency_ms is not None and costs.get("latency_ms", 0.0) > self.max_latency_ms:
            out.append(f"{costs['latency_ms']:.3g} ms per batch of {self.latency_batch} on {self.latency_device}, "
                       f"over --max-latency-ms {self.max_latency_ms:g}")
        return out


def retry_seed(seed: int, attempt: int) -> int:
    """The seed of draw `attempt` of a child whose first draw was `seed` (attempt 0: `seed`
    itself, so that a run without a latency limit draws what it always drew)."""
    if attempt == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}/{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31)
