"""Ray across nodes: a two-node cluster on this machine (`ray start --head`, then `ray start
--address` with its own temp dir and CPUs), a climb and a comparison on it through the CLI, and
the worker node's raylet killed while it runs their work. The step (the comparison) completes:
the lost work is retried on the head, the parent is never lost, the results are written.

The head offers 1 CPU for tasks, each of two worker nodes 2 (each test kills one), and a step
dispatches 3 candidates (the comparison 2 runs at once on a head that fits one): work lands on
a worker node whatever Ray's placement, and the head can take the retries once it is gone. The
kill waits for a task process of a worker node's raylet ("ray::run_job", Ray's name for a
worker busy with that function) while the run's events show its step not yet done: no sleep
decides it.

Every process `ray start` makes carries a marker in its environment, or this cluster's temp
dir in its command line, or descends from one that does; such processes are noted before each
kill (a killed raylet's agents live on, orphaned) and at the teardown, which ends exactly those,
by their ids (and start times: an id may be reused)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.cluster

MARK = "NASH_TEST_RAY_CLUSTER"
WAIT = 240  # s: the most any one phase may take on a busy 2-core machine


_GIVEN: set[int] = set()  # ports handed out in this process: a port freed may be offered again


def _free_ports(n: int) -> list[int]:
    """n distinct ports free now, none handed out before in this process. Each socket is held until
    all n are bound: a port bound and closed at once is often offered again to the next bind, and
    Ray refuses a node whose components share a port (CI once drew object_manager and
    metrics_export both on 40367)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in _GIVEN:
                ports.append(port)
                _GIVEN.add(port)
    finally:
        for s in socks:
            s.close()
    return ports


def _free_port() -> int:
    return _free_ports(1)[0]


def _ports() -> list[str]:
    # every port of a node its own: two nodes (and other Rays) share this machine
    flags = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    return [x for flag, port in zip(flags, _free_ports(len(flags))) for x in (flag, str(port))]


def _stat(pid: int):
    """(ppid, start time) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _procs():
    """(pid, ppid, cmdline) of every process."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        st = _stat(int(p))
        if st is not None:
            yield int(p), st[0], cmd


class Cluster:
    def __init__(self, root: Path):
        self.root, self.token = root, root.name
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, MARK: self.token, "RAY_USAGE_STATS_ENABLED": "0",
                    # a token of this cluster's own (Ray 2.5x on): nothing written to ~/.ray
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(32).hex(),
                    # a dead node is declared dead within seconds, not Ray's default ~30 s
                    "RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                    "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        self.workers = {}  # a live worker node's temp dir -> its raylet's pid
        self.seen = {}  # pid -> start time of every process of this cluster noted so far

    def note(self) -> None:
        """Note this cluster's processes: marked (environment; Ray's workers and agents overwrite
        theirs with their titles), naming its temp dir, or descending from one of those."""
        want, root = f"{MARK}={self.token}".encode(), f"{self.root}/"
        procs = [(pid, ppid, cmd) for pid, ppid, cmd in _procs() if pid != os.getpid()]
        ours = set()
        for pid, _, cmd in procs:
            try:
                marked = want in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                marked = False
            if marked or root in cmd:
                ours.add(pid)
        grew = True
        while grew:
            new = {pid for pid, ppid, _ in procs if ppid in ours} - ours
            ours |= new
            grew = bool(new)
        for pid in ours:
            st = _stat(pid)
            if st is not None:
                self.seen.setdefault(pid, st[1])

    def _ray_start(self, *args) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--node-ip-address",
                                 "127.0.0.1", "--disable-usage-stats", *_ports(), *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @staticmethod
    def _started(p: subprocess.Popen) -> None:
        out, _ = p.communicate(timeout=WAIT)
        assert p.returncode == 0, out[-3000:]

    def start(self) -> None:
        """The head, then two worker nodes of 2 CPUs, each with a temp dir of its own."""
        self._started(self._ray_start("--head", "--port", str(self.port), "--num-cpus", "1", "--include-dashboard",
                                      "false", "--dashboard-port", str(_free_port()), "--temp-dir",
                                      str(self.root / "head")))
        tmps = [self.root / f"w{k}" for k in (1, 2)]
        for p in [self._ray_start("--address", self.address, "--num-cpus", "2", "--temp-dir", str(t)) for t in tmps]:
            self._started(p)
        for t in tmps:
            pids = [pid for pid, _, cmd in _procs() if "raylet/raylet " in cmd and f"{t}/" in cmd]
            assert len(pids) == 1, pids
            self.workers[t] = pids[0]

    def stop(self) -> None:
        for _ in range(5):  # a dying raylet may still start a worker
            self.note()
            alive = [pid for pid, start in self.seen.items() if (_stat(pid) or (0, None))[1] == start]
            if not alive:
                break
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    # Ray's Unix sockets live under the temp dirs: a short path
    c = Cluster(Path(tempfile.mkdtemp(prefix="nrc-", dir="/tmp")))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def nash(cluster, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nash", *args, "--ray-address", cluster.address, "--executor",
                             "ray", "--device", "cpu", "--quiet"], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def events(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def kill_a_worker_node_when(cluster, task: str, proc: subprocess.Popen, ready) -> None:
    """SIGKILL the raylet of a live worker node, and its workers and agents with it (a lost
    node takes its processes along; a worker left running would go on writing the run
    directory its retry resumes), as soon as one of its workers runs `task` and ready() holds
    (each checked on every poll; the run must still be going)."""
    deadline = time.time() + WAIT
    while True:
        busy = {ppid for pid, ppid, cmd in _procs() if cmd.startswith(f"ray::{task}")}
        hit = [t for t, raylet in cluster.workers.items() if raylet in busy]
        if hit and ready():
            break
        assert proc.poll() is None, f"the run ended before its work reached a worker node: {proc.communicate()}"
        assert time.time() < deadline, "no task reached a worker node"
        time.sleep(0.05)
    cluster.note()
    raylet = cluster.workers.pop(hit[0])
    procs = list(_procs())
    node = {raylet}  # the raylet and every process under it: the node is gone at once
    while True:
        more = {pid for pid, ppid, _ in procs if ppid in node} - node
        if not more:
            break
        node |= more
    for pid in [raylet, *(node - {raylet})]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_climb_survives_the_loss_of_a_worker_node_mid_step(cluster, tmp_path):
    out = tmp_path / "climb"
    # 3 candidates of ~2-3 s each: the kill lands while they train
    p = nash(cluster, "climb", "--schedule", "paper", "--steps", "1", "--n-neigh", "3", "--n-nm", "1",
             "--epoch-neigh", "30", "--pretrain-epochs", "2", "--epoch-final", "1", "--widths", "8,16",
             "--subset", "800", "--seed", "3", "--out", str(out))
    step_open = lambda: any(e["event"] == "start" for e in events(out / "events.jsonl")) and \
        not any(e["event"] == "child" for e in events(out / "events.jsonl"))
    kill_a_worker_node_when(cluster, "run_job", p, step_open)
    assert step_open()  # the kill landed inside step 1: none of its candidates was reported yet
    stdout, stderr = p.communicate(timeout=WAIT)
    assert p.returncode == 0, stderr[-3000:]
    evs = events(out / "events.jsonl")
    kids = [e for e in evs if e["event"] == "child"]
    assert len(kids) == 3
    parent = next(e for e in kids if e["is_parent"])
    assert parent["failed"] is None and parent["epochs"] == 30  # the parent is never lost
    for e in kids:  # each lost candidate was retried on the head, or recorded as lost
        assert e["failed"] is None or e["failed"].startswith("worker lost: "), e
    assert [e["step"] for e in evs if e["event"] == "step"] == [1]
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 1 and (out / "best" / "weights.pt").is_file()


def test_a_comparison_survives_the_loss_of_a_worker_node(cluster, tmp_path):
    assert cluster.workers, "no worker node left"
    out = tmp_path / "cmp"  # shared by the nodes: the workers write the run directories
    p = nash(cluster, "compare", "--methods", "none,random", "--seeds", "1", "--budget", "10s", "--subset", "300",
             "--widths", "8,8", "--out", str(out))
    runs = [out / "none-seed0", out / "random-seed0"]
    both_running = lambda: all((r / "config.json").exists() and not (r / "results.json").exists() for r in runs)
    kill_a_worker_node_when(cluster, "run_call", p, both_running)
    stdout, stderr = p.communicate(timeout=WAIT)
    assert p.returncode == 0, (stdout[-2000:], stderr[-3000:], sorted(str(f.relative_to(out)) for f in out.rglob("*")))
    assert "| none |" in stdout and "| random |" in stdout
    summary = json.loads((out / "compare.json").read_text())
    assert sorted(summary["runs"]) == ["none-seed0", "random-seed0"]
    for r in runs:  # the lost run went on from its checkpoint (what is left of its budget: its accuracy varies)
        assert set(json.loads((r / "results.json").read_text())["final"]) >= {"val_acc", "test_acc", "params"}
