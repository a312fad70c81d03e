"""Ray across nodes: a two-node cluster on this machine (`ray start --head`, then `ray start
--address` with its own temp dir and CPUs), a climb and a comparison on it through the CLI, and
the worker node's raylet killed while it runs their work. The step (the comparison) completes:
the lost work is retried on the head, the parent is never lost, the results are written.

The head offers 1 CPU for tasks, the worker node 2, and a step dispatches 3 candidates (the
comparison 2 runs at once on a head that fits one): work lands on the worker node whatever
Ray's placement, and the head can take the retries once the worker node is gone. The kill waits
for a task process of the worker node's raylet ("ray::run_job", Ray's name for a worker busy
with that function) while the run's events show its step not yet done: no sleep decides it.

Every process of the cluster carries a marker in its environment (the Ray processes inherit
it from `ray start`); the teardown ends exactly those, by their ids."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports() -> list[str]:
    # every port of a node its own: two nodes (and other Rays) share this machine
    out = []
    for flag in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"):
        out += [flag, str(_free_port())]
    return out


def _procs():
    """(pid, ppid, cmdline) of every process."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        yield int(p), ppid, cmd


def _marked(token: str) -> list[int]:
    """The processes whose environment holds MARK=token: this cluster's, and the nash drivers."""
    want = f"{MARK}={token}".encode()
    pids = []
    for pid, _, _ in _procs():
        try:
            if want in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.append(pid)
        except OSError:
            continue
    return pids


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
        self.workers = 0

    def _ray_start(self, *args) -> None:
        p = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--node-ip-address", "127.0.0.1",
                            "--disable-usage-stats", *_ports(), *args], env=self.env, capture_output=True,
                           text=True, timeout=WAIT)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]

    def start_head(self) -> None:
        self._ray_start("--head", "--port", str(self.port), "--num-cpus", "1", "--include-dashboard", "false",
                        "--dashboard-port", str(_free_port()), "--temp-dir", str(self.root / "head"))

    def add_worker(self) -> Path:
        """A worker node of 2 CPUs with a temp dir of its own; returns that dir."""
        self.workers += 1
        tmp = self.root / f"w{self.workers}"
        self._ray_start("--address", self.address, "--num-cpus", "2", "--temp-dir", str(tmp))
        return tmp

    def raylet(self, tmp: Path) -> int:
        pids = [pid for pid, _, cmd in _procs() if "raylet/raylet " in cmd and f"{tmp}/" in cmd]
        assert len(pids) == 1, pids
        return pids[0]

    def stop(self) -> None:
        for _ in range(3):  # a dying raylet may still start a worker
            pids = [p for p in _marked(self.token) if p != os.getpid()]
            if not pids:
                break
            for pid in pids:
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
        c.start_head()
        yield c
    finally:
        c.stop()


def nash(cluster, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nash", *args, "--ray-address", cluster.address, "--executor",
                             "ray", "--device", "cpu", "--quiet"], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def events(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def kill_raylet_when(cluster, tmp: Path, task: str, proc: subprocess.Popen, ready) -> None:
    """SIGKILL the raylet of the worker node in `tmp` as soon as one of its workers runs `task`
    and ready() holds (each checked on every poll; the run must still be going)."""
    raylet = cluster.raylet(tmp)
    deadline = time.time() + WAIT
    while True:
        busy = [pid for pid, ppid, cmd in _procs() if ppid == raylet and cmd.startswith(f"ray::{task}")]
        if busy and ready():
            break
        assert proc.poll() is None, f"the run ended before its work reached the worker node: {proc.communicate()}"
        assert time.time() < deadline, "no task reached the worker node"
        time.sleep(0.05)
    os.kill(raylet, signal.SIGKILL)


def test_a_climb_survives_the_loss_of_a_worker_node_mid_step(cluster, tmp_path):
    tmp = cluster.add_worker()
    out = tmp_path / "climb"
    # 3 candidates of ~2-3 s each: the kill lands while they train
    p = nash(cluster, "climb", "--schedule", "paper", "--steps", "1", "--n-neigh", "3", "--n-nm", "1",
             "--epoch-neigh", "30", "--pretrain-epochs", "2", "--epoch-final", "1", "--widths", "8,16",
             "--subset", "800", "--seed", "3", "--out", str(out))
    step_open = lambda: any(e["event"] == "start" for e in events(out / "events.jsonl")) and \
        not any(e["event"] == "child" for e in events(out / "events.jsonl"))
    kill_raylet_when(cluster, tmp, "run_job", p, step_open)
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
    tmp = cluster.add_worker()
    out = tmp_path / "cmp"  # shared by the nodes: the workers write the run directories
    p = nash(cluster, "compare", "--methods", "none,random", "--seeds", "1", "--budget", "10s", "--subset", "300",
             "--widths", "8,8", "--out", str(out))
    runs = [out / "none-seed0", out / "random-seed0"]
    both_running = lambda: all((r / "config.json").exists() and not (r / "results.json").exists() for r in runs)
    kill_raylet_when(cluster, tmp, "run_call", p, both_running)
    stdout, stderr = p.communicate(timeout=WAIT)
    assert p.returncode == 0, stderr[-3000:]
    assert "| none |" in stdout and "| random |" in stdout
    summary = json.loads((out / "compare.json").read_text())
    assert sorted(summary["runs"]) == ["none-seed0", "random-seed0"]
    for r in runs:  # the lost run went on from its checkpoint (what is left of its budget: its accuracy varies)
        assert set(json.loads((r / "results.json").read_text())["final"]) >= {"val_acc", "test_acc", "params"}
