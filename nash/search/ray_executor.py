"""The `ray` executor: a step's candidates in parallel, one Ray task each.

    ex = RayExecutor()                          # a local Ray for this run, as many tasks as cores
    ex = RayExecutor("auto", gpus_per_candidate=0.25)   # a running cluster, four candidates a GPU
    outcomes = ex.map(jobs, (data, settings), on_done)  # as LocalExecutor.map
    ex.close()

What travels: the data go into the object store once (again only when a `map` call brings
another DataSplits object), the training settings (a few numbers) with each task.
A job for a fresh child whose `origin` is set carries no network: the parent goes into the
object store once (shared by every child made from it) and the worker rebuilds the child with
the same `random_morphisms` call (same seed, same calibration batch) that made it here. A
fingerprint of the child as made here checks the rebuild bit for bit; where it differs (another
CPU or GPU model rounds differently) the job is sent again with the child itself, so results
never depend on where a candidate trained. Trained networks come back on the CPU and are moved
to the device the job's network was on.

Where: on the run's device. A task asks Ray for `cpus_per_candidate` CPUs (it trains with that
many torch threads) and, when the run trains on a GPU (its data are on one), for
`gpus_per_candidate` GPUs (default 1; a fraction puts several candidates on one GPU) and trains
on the GPU Ray gave it. A run on the CPU asks for no GPU and its tasks train on the CPU, GPUs
or not. A GPU task runs in a fresh worker process (`task_options`).

A lost worker (killed, out of memory, its node gone) is retried once; lost again, the candidate
is recorded as failed ("worker lost: ...") and the step goes on, except for the job marked
`required` (the parent, or the best so far): then the step cannot go on and a NashError says
so. An exception raised by the training itself is raised here, as the local executor would.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import secrets
import shutil
import tempfile
import time
from collections import OrderedDict
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import ray
import torch
from ray.exceptions import RayError, RayTaskError

from .. import allocator
from ..data import DataSplits
from ..errors import NashError, OptionError
from .jobs import ChildOrigin, RebuildMismatch, TrainJob, TrainOutcome, net_fingerprint, train_candidate

REBUILT_DIFFERS = "rebuilt child differs"  # a worker's answer that makes the job go again, with its net


# ---------------------------------------------------------------------------------- worker side

# per worker process: the latest shared objects of each kind, on its device (one data set: it
# can be large; two parents and calibration batches, for two climbs sharing the workers)
_CACHE: dict[str, OrderedDict] = {"data": OrderedDict(), "parent": OrderedDict(), "calibrate": OrderedDict()}
_KEEP = {"data": 1, "parent": 2, "calibrate": 2}


def _cached(kind: str, ref_box: list, device: torch.device, prepare):
    """ray.get(ref), prepared for `device`, once per worker process while it is recent. The ref
    comes in a list so that Ray hands the task the ref, not a fresh copy of its object."""
    cache, key = _CACHE[kind], (ref_box[0].hex(), str(device))
    if key in cache:
        cache.move_to_end(key)
    else:
        while len(cache) >= _KEEP[kind]:
            cache.popitem(last=False)  # before the get: never two data sets at once
        cache[key] = prepare(ray.get(ref_box[0]))
    return cache[key]


def task_options(cpus: int, gpus: float) -> dict:
    """The ray.remote options of a task with these resources. A GPU task gets a fresh worker
    process (max_calls=1: Ray's own default for GPU functions, which `.options(num_gpus=...)`
    would skip): CUDA reads CUDA_VISIBLE_DEVICES once, when a process first uses it, so a reused
    worker would keep its first task's GPU and later tasks would pile onto it."""
    opts = dict(num_cpus=cpus, num_gpus=gpus, max_retries=1)
    if gpus > 0:
        opts["max_calls"] = 1
    return opts


def task_device(run_device: str = "cuda") -> torch.device:
    """The device of the running task: the CPU for a run on the CPU (`run_device` "cpu"); else
    the GPU Ray gave it, else the CPU. Ray sets CUDA_VISIBLE_DEVICES to the task's GPU, which is
    then cuda:0 (the task's process is fresh: `task_options`); where Ray is told not to set it,
    every GPU is visible under its own id."""
    gpu_ids = ray.get_gpu_ids()
    if run_device == "cpu" or not gpu_ids or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", 0 if os.environ.get("CUDA_VISIBLE_DEVICES") else int(gpu_ids[0]))


def _data_on(data: DataSplits, device: torch.device) -> DataSplits:
    return replace(data, **{k: getattr(data, k).to(device) for k in
                            ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")})


def _process_state(opts: dict) -> None:
    # process-wide state a worker needs as the nash CLI sets it at its start
    torch.set_flush_denormal(opts["flush_denormal"])
    torch.set_num_threads(opts["threads"])
    if opts.get("keep_freed_memory"):
        allocator.keep_freed_memory()


def run_job(job: TrainJob, net, rebuild: dict | None, data_box: list, settings, opts: dict) -> TrainOutcome:
    """One candidate in a Ray worker: rebuild or take its network, train it on the task's
    device, send it back on the CPU."""
    _process_state(opts)
    device = task_device(opts["device"])
    data = _cached("data", data_box, device, lambda d: _data_on(d, device))
    if rebuild is not None:
        build_device = device if rebuild["on"] == "cuda" else torch.device("cpu")
        parent = _cached("parent", rebuild["parent"], build_device, lambda n: n.to(build_device))
        calib = None if rebuild["calibrate"] is None else \
            _cached("calibrate", rebuild["calibrate"], build_device, lambda t: t.to(build_device))
        torch.set_num_threads(opts["build_threads"])  # as many as where it was made: same rounding
        try:
            net = ChildOrigin(parent, rebuild["n"], rebuild["seed"], calib, rebuild["moves"], rebuild["max_macs"],
                              rebuild.get("max_params"), rebuild.get("first")).build()
        except RebuildMismatch:  # it drew other moves; any other error (out of memory) is the task's own
            net = None
        finally:
            torch.set_num_threads(opts["threads"])
        if net is None or net_fingerprint(net) != rebuild["fingerprint"]:
            return TrainOutcome(job.key, None, failed=REBUILT_DIFFERS)
    out = train_candidate(replace(job, net=net.to(device)), (data, settings))
    if out.net is not None:
        out.net = out.net.cpu()
    return out


def run_call(fn, args: tuple, opts: dict):
    """One whole function call in a Ray worker (e.g. a run of `nash compare`)."""
    _process_state(opts)
    return fn(*args, device=task_device(opts["device"]))


# ---------------------------------------------------------------------------------- driver side

def _cpu_net(net):
    """The network on the CPU for shipping; the caller's copy stays where it is."""
    p = next(iter(net.parameters()), None)
    return net if p is None or p.device.type == "cpu" else copy.deepcopy(net).cpu()


def _net_device(net) -> torch.device:
    p = next(iter(net.parameters()), None)
    return torch.device("cpu") if p is None else p.device


def _device_type(device: str | torch.device | None) -> str:
    """"cpu" or "cuda": the kind of device a run on `device` trains on (None, "auto": CUDA where
    this process has it, as --device auto)."""
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(device).type
    except RuntimeError:
        raise OptionError(f"unknown device {device!r} (auto, cpu, cuda, cuda:1, ...)") from None


def _drain(pending: dict):
    """Yield (pending[ref], its result, None) as each task in `pending` finishes, or (pending[ref],
    None, the RayError) when its worker was lost twice. A task that raised re-raises its own
    exception here, as the local executor would. `pending` may grow while this runs; whatever
    is still pending when the caller stops (or raises) is cancelled."""
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                key = pending.pop(ref)
                try:
                    result, error = ray.get(ref), None
                except RayTaskError as e:  # the task itself raised
                    raise (e.cause if isinstance(e.cause, BaseException) else e) from None
                except RayError as e:  # the worker was lost, and lost again on the retry
                    result, error = None, e
                yield key, result, error
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}" + (f": {text[0][:200]}" if text else "")


def _reload_auth() -> None:
    """Make this process's Ray read the authentication settings of the environment again (Ray
    reads them once, as ray.init does after changing them; Ray before 2.5x has none)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@dataclass
class _Pending:
    index: int
    job: TrainJob
    device: torch.device


class RayExecutor:
    """One Ray task per job; see the module's docstring. `address`: None starts a local Ray for
    this executor (shut down by close()); "auto" or "HOST:PORT" joins a running cluster. When
    this process is already connected to Ray, that connection is used and left open. `threads`:
    the torch threads of a task (default: cpus_per_candidate). `device`: the run's ("auto":
    CUDA where this process has it, as --device auto); `map` follows its data's device, so a
    resumed run keeps the device it was started on, and `run_many` runs on this one."""
    name = "ray"
    in_process = False  # parallelism: set from the cluster's resources (_slots)
    runner = staticmethod(run_job)  # the task's body (tests swap in one that kills its worker)

    def __init__(self, address: str | None = None, gpus_per_candidate: float | None = None,
                 cpus_per_candidate: int = 1, temp_dir: str | None = None, flush_denormal: bool = True,
                 threads: int | None = None, device: str | torch.device | None = None):
        self.device_type = _device_type(device)
        if device not in (None, "auto") and gpus_per_candidate is not None:  # a choice of both: they must agree
            if float(gpus_per_candidate) > 0 and self.device_type == "cpu":
                raise OptionError(f"--gpus-per-candidate {gpus_per_candidate} with --device {device}: a run on the "
                                  f"CPU trains its candidates on CPUs")
            if float(gpus_per_candidate) == 0 and self.device_type == "cuda":
                raise OptionError(f"--gpus-per-candidate 0 with --device {device}: a run on CUDA needs a GPU share for "
                                  f"each candidate (or give --device cpu)")
        gpus = 1.0 if gpus_per_candidate is None else float(gpus_per_candidate)  # per candidate of a GPU run
        cpus = cpus_per_candidate
        if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
            raise OptionError(f"--gpus-per-candidate {gpus_per_candidate}: give a fraction of one GPU (0.25: four "
                              f"candidates a GPU) or a whole number")
        if not isinstance(cpus, int) or cpus < 1:
            raise OptionError(f"--cpus-per-candidate {cpus_per_candidate}: give a whole number of at least 1")
        self.gpus, self.cpus = gpus, cpus
        self.threads = threads or cpus  # torch threads a task trains with
        self.flush_denormal = flush_denormal
        self.stats = {"rebuilt": 0, "sent": 0, "resent": 0, "lost": 0}  # how jobs travelled, for checks
        self._remotes = {}
        self._data = None  # (the DataSplits object, [its ref])
        self._owner = False
        self._tmp = None
        self._env = {}
        if not ray.is_initialized():
            self._connect(address, temp_dir)
        self.parallelism = self._slots(self.device_type)
        if self.parallelism < 1:
            self.close()
            raise OptionError(f"no node of the Ray cluster has {cpus} CPU(s) and {self._gpus(self.device_type):g} "
                              f"GPU(s) for one candidate (see --cpus-per-candidate, --gpus-per-candidate, --device)")

    def _connect(self, address, temp_dir) -> None:
        kw = dict(log_to_driver=False, logging_level=logging.WARNING)
        if address is None:
            # Ray's sockets live there: a short path (a Unix socket's path has ~100 characters)
            if temp_dir is None:
                self._tmp = tempfile.mkdtemp(prefix="nash-ray-")  # removed by close(); never the user's home
            Path(temp_dir or self._tmp).mkdir(parents=True, exist_ok=True)
            self._private_token()
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            # Ray makes 127.0.0.1 its reachable address itself; the token keeps others out
            kw.update(num_cpus=cores, include_dashboard=False, _temp_dir=str(Path(temp_dir or self._tmp).resolve()),
                      _node_ip_address="127.0.0.1")
        else:
            kw.update(address=address)
        try:
            ray.init(**kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            self.close()
            where = "start a local Ray" if address is None else f"reach the Ray cluster at {address!r}"
            raise NashError(f"could not {where}: {_reason(e)}") from None
        self._owner = True

    def _private_token(self) -> None:
        """Ray (2.5x on) turns token authentication on for a local cluster and writes a token to
        ~/.ray/auth_token. Unless the user set authentication up, this run's cluster gets a
        token of its own in the environment (inherited by its processes): nothing written home."""
        if any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")) \
                or (Path.home() / ".ray" / "auth_token").exists():
            return
        for k, v in (("RAY_AUTH_TOKEN", secrets.token_hex(32)), ("RAY_AUTH_MODE", "token")):
            self._env[k] = os.environ.get(k)
            os.environ[k] = v
        _reload_auth()

    def _restore_env(self) -> None:
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._env:
            _reload_auth()
        self._env = {}

    def _gpus(self, device_type: str) -> float:
        """GPUs per task of a run on `device_type`: none on the CPU."""
        return self.gpus if device_type == "cuda" else 0.0

    def _slots(self, device_type: str) -> int:
        """How many tasks of this shape the cluster's nodes can run at once."""
        total, gpus = 0, self._gpus(device_type)
        for node in ray.nodes():
            if not node.get("Alive", True):
                continue
            res = node.get("Resources", {})
            k = math.floor(res.get("CPU", 0) / self.cpus + 1e-9)
            if gpus:
                k = min(k, math.floor(res.get("GPU", 0) / gpus + 1e-9))
            total += k
        return total

    def _use(self, device_type: str) -> None:
        """Tasks from now on for a run on `device_type` (a map's data say where the run trains)."""
        if device_type not in ("cpu", "cuda"):
            raise OptionError(f"the ray executor trains on cpu or cuda, not {device_type}")
        if device_type != self.device_type:
            self.device_type = device_type
            self.parallelism = self._slots(device_type)

    def _remote(self, fn):
        """fn as a Ray remote function with this executor's resources for the run's device, made
        once. ray.remote, not .options(): only ray.remote takes max_calls (`task_options`)."""
        key = (fn, self.device_type)
        if key not in self._remotes:
            self._remotes[key] = ray.remote(**task_options(self.cpus, self._gpus(self.device_type)))(fn)
        return self._remotes[key]

    def _put_data(self, data: DataSplits) -> list:
        """The data set in the object store (on the CPU), put once while the same DataSplits
        object comes back (a step's rungs, every step of a climb): it may be large."""
        if self._data is None or self._data[0] is not data:
            self._data = None  # the old one may go
            self._data = (data, [ray.put(_data_on(data, torch.device("cpu")))])
        return self._data[1]

    def _opts(self) -> dict:
        return {"threads": self.threads, "build_threads": torch.get_num_threads(), "device": self.device_type,
                "flush_denormal": self.flush_denormal, "keep_freed_memory": allocator.kept()}

    # ------------------------------------------------------------------ map

    def map(self, jobs: list[TrainJob], shared, on_done=None) -> list[TrainOutcome]:
        data, settings = shared
        self._use(data.train_x.device.type)  # the run trains where its data are
        data_box = self._put_data(data)
        remote = self._remote(self.runner)
        opts = self._opts()
        puts = {}  # id(object) -> (its ref, the object, kept alive so ids stay unique)

        def put_once(obj, prepare):
            if id(obj) not in puts:
                puts[id(obj)] = (ray.put(prepare(obj)), obj)
            return [puts[id(obj)][0]]

        def submit(job: TrainJob, with_net: bool):
            o = job.origin
            light = replace(job, net=None, origin=None)
            if o is None or with_net:
                self.stats["sent"] += 1
                return remote.remote(light, _cpu_net(job.net), None, data_box, settings, opts)
            self.stats["rebuilt"] += 1
            rebuild = {"parent": put_once(o.parent, _cpu_net), "n": o.n, "seed": o.seed, "moves": list(o.moves),
                       "max_macs": o.max_macs, "max_params": o.max_params, "first": o.first,
                       "calibrate": None if o.calibrate is None else
                       put_once(o.calibrate, lambda t: t.detach().cpu().clone()),  # the slice, not its storage
                       "on": _net_device(o.parent).type, "fingerprint": net_fingerprint(_cpu_net(job.net))}
            return remote.remote(light, None, rebuild, data_box, settings, opts)

        pending = {submit(job, False): _Pending(i, job, _net_device(job.net)) for i, job in enumerate(jobs)}
        outcomes: list[TrainOutcome | None] = [None] * len(jobs)
        with closing(_drain(pending)) as finished:  # closing: cancel the rest when this raises
            for p, out, lost in finished:
                if lost is not None:  # the worker was lost, and lost again on Ray's retry
                    self.stats["lost"] += 1
                    if p.job.required:
                        raise NashError(f"candidate {p.job.key} (required: the parent or the best so far): its Ray "
                                        f"worker was lost twice ({_reason(lost)}); resume the run to go on from its "
                                        f"last checkpoint") from None
                    out = TrainOutcome(p.job.key, None, failed=f"worker lost: {_reason(lost)}")
                if out.failed == REBUILT_DIFFERS:
                    self.stats["resent"] += 1
                    pending[submit(p.job, True)] = p
                    continue
                if out.net is not None:
                    out.net = out.net.to(p.device)
                outcomes[p.index] = out
                if on_done is not None:
                    on_done(out)
        return outcomes

    # ------------------------------------------------------------------ whole calls

    def run_many(self, fn, calls: list[tuple], on_done=None) -> list:
        """fn(*args, device=the task's device) for each args of `calls`, one Ray task each (fn
        must be importable by the workers); the results in order, on_done(index, result) as
        each finishes. A call whose worker was lost twice raises a NashError once the others
        are done; one that raises stops the rest."""
        remote = self._remote(run_call)
        opts = self._opts()
        pending = {remote.remote(fn, args, opts): i for i, args in enumerate(calls)}
        results, lost = [None] * len(calls), []
        with closing(_drain(pending)) as finished:
            for i, result, error in finished:
                if error is not None:
                    lost.append(f"call {i} ({_reason(error)})")
                    continue
                results[i] = result
                if on_done is not None:
                    on_done(i, result)
        if lost:
            raise NashError(f"Ray workers were lost twice: {'; '.join(lost)}")
        return results

    def close(self) -> None:
        self._data, self._remotes = None, {}
        if self._owner and ray.is_initialized():
            ray.shutdown()
        self._owner = False
        self._restore_env()
        if self._tmp is not None:
            for _ in range(20):  # Ray's processes may still write a log line while they stop
                shutil.rmtree(self._tmp, ignore_errors=True)
                if not os.path.exists(self._tmp):
                    break
                time.sleep(0.25)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
