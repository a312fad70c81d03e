"""The ray executor: the same results as local, a lost worker does not stop a step, and without
Ray one line. One local Ray (2 CPUs here) serves the whole module."""
import copy
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nash.cli import main
from nash.search import ClimbConfig, RandomConfig, load_data, run_searcher
from nash.search.executors import RAY_MISSING, LocalExecutor, make_executor
from nash.search.jobs import TrainJob, TrainSettings

WALL_CLOCK = ("time", "elapsed", "seconds", "wall")
TINY = dict(widths=(8, 16), subset=400, device="cpu", seed=1, epoch_final=1)


def comparable(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
            for line in (Path(run_dir) / "events.jsonl").read_text().splitlines()]


def test_without_ray_the_ray_executor_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    with pytest.raises(Exception, match="needs Ray"):
        make_executor("ray")
    r = CliRunner().invoke(main, ["climb", "--executor", "ray", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.splitlines() == [f"nash: error: {RAY_MISSING}"]
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    from nash.search.ray_executor import RayExecutor
    ex = RayExecutor(cpus_per_candidate=1)  # a local Ray, one task per core
    yield ex
    ex.close()


@pytest.fixture
def same_arithmetic():
    """The local run computes as a worker does: one torch thread, denormals flushed (as the CLI
    and the workers set it); with other thread counts results agree to float rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("schedule", ["paper", "budget"])
def test_a_climb_on_ray_equals_the_local_climb(tmp_path, ray_executor, same_arithmetic, schedule):
    cfg = ClimbConfig(**TINY, steps=1, n_neigh=3, n_nm=2, schedule=schedule, epoch_neigh=4, pretrain_epochs=4)
    data = load_data(cfg)
    local = run_searcher("nash", cfg, out=tmp_path / "local", executor=LocalExecutor(), data=data)
    before = dict(ray_executor.stats)
    remote = run_searcher("nash", cfg, out=tmp_path / "ray", executor=ray_executor, data=data)
    assert comparable(tmp_path / "ray") == comparable(tmp_path / "local")
    assert remote["final"] == local["final"] and remote["history"] == local["history"]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local").iterdir())
    # fresh children travelled as parent + moves and were rebuilt bit for bit
    assert ray_executor.stats["rebuilt"] - before["rebuilt"] == 3
    assert ray_executor.stats["resent"] == before["resent"]


def test_random_search_on_ray_equals_local(tmp_path, ray_executor, same_arithmetic):
    cfg = RandomConfig(**TINY, candidates=3, n_nm=1, epoch_neigh=2)
    data = load_data(cfg)
    run_searcher("random", cfg, out=tmp_path / "local", executor=LocalExecutor(), data=data)
    assert ray_executor.parallelism == len(os.sched_getaffinity(0))
    run_searcher("random", cfg, out=tmp_path / "ray", executor=ray_executor, data=data)  # batches of 2, then 1
    assert comparable(tmp_path / "ray") == comparable(tmp_path / "local")


def crashing(how: dict, marks: Path):
    """A task body that kills its own worker process: for a job key "once" (the first attempt
    only, so the retry succeeds) or "always"; a nested function, so Ray ships it by value."""
    from nash.search.ray_executor import run_job

    def runner(job, *args):
        mark = marks / f"crashed-{job.key}"
        if how.get(job.key) == "always" or (how.get(job.key) == "once" and not mark.exists()):
            mark.touch()
            os._exit(1)
        return run_job(job, *args)
    return runner


def test_a_lost_worker_is_retried_once_then_the_candidate_fails(tmp_path, ray_executor, same_arithmetic):
    from morphisms import start_net
    from nash.errors import NashError
    from nash.search.ray_executor import RayExecutor
    data = load_data(ClimbConfig(**TINY))
    shared = (data, TrainSettings(0.05, 0.0, 64, data.augment))
    nets = [start_net(1, 10, (4, 8), data.image_size) for _ in range(3)]

    def jobs():
        return [TrainJob(k, copy.deepcopy(net), 1, (0.0, 1.0), seed=k, required=(k == 0)) for k, net in enumerate(nets)]

    local = LocalExecutor().map(jobs(), shared)
    ex = RayExecutor()  # joins the module's Ray
    ex.runner = crashing({1: "once", 2: "always"}, tmp_path)
    seen = []
    outs = ex.map(jobs(), shared, on_done=lambda o: seen.append(o.key))
    assert sorted(seen) == [0, 1, 2] and [o.key for o in outs] == [0, 1, 2]
    assert outs[0].ok and outs[1].ok  # the one crash of key 1 was retried
    assert (outs[1].val_acc, outs[1].val_loss) == (local[1].val_acc, local[1].val_loss)
    assert outs[2].failed.startswith("worker lost: ") and outs[2].net is None
    assert ex.stats["lost"] == 1
    # the required job (the parent) lost twice: the step cannot go on
    ex.runner = crashing({0: "always"}, tmp_path)
    with pytest.raises(NashError, match="candidate 0 .*lost twice"):
        ex.map(jobs()[:2], shared)


def test_compare_on_ray_runs_the_runs_at_once(tmp_path, ray_executor):
    out = tmp_path / "cmp"
    r = CliRunner().invoke(main, ["compare", "--methods", "none,random", "--seeds", "1", "--budget", "6s",
                                  "--subset", "200", "--widths", "8,8", "--device", "cpu", "--executor", "ray",
                                  "--out", str(out),
                                  "--quiet"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "| none |" in r.output and "| random |" in r.output
    spans = []
    for name in ("none-seed0", "random-seed0"):
        assert (out / name / "results.json").is_file()  # written by the worker
        spans.append(((out / name / "config.json").stat().st_mtime, (out / name / "results.json").stat().st_mtime))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the two runs overlapped in time
