"""nash pareto (LEMONADE): the front is the non-dominated set of everything evaluated, a resumed
run equals an uninterrupted one, recovery brings a shrunk child back toward its parent, and
`nash export --max-params` takes the best front member under the limit."""
import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from morphisms import Network, random_morphisms, start_net
from morphisms.shrink import shrinks
from nash.cli import main
from nash.data import load_dataset
from nash.search import ParetoConfig
from nash.search.pareto import inverse_density, non_dominated
from nash.search.recovery import output_distance, recover
from nash.train import evaluate, sgdr_train

# a few seconds per run on a 2-core CPU: enough generations for a front of several members
TINY = ["--data", "digits", "--subset", "600", "--device", "cpu", "--widths", "16,32", "--children", "4",
        "--proposals", "8", "--child-epochs", "2", "--start-epochs", "5", "--batch-size", "64", "--quiet"]
UNTIMED = ("time", "elapsed", "seconds")


def pareto(*args):
    r = CliRunner().invoke(main, ["pareto", *TINY, *map(str, args)])
    assert r.exit_code == 0, r.output
    return r


def events(run):
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def untimed(run):
    return [{k: v for k, v in e.items() if k not in UNTIMED} for e in events(run)]


def front_ids(run):
    return [m["id"] for m in json.loads((run / "front.json").read_text())["members"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Three generations in one go, parameters as the cost."""
    run = tmp_path_factory.mktemp("pareto") / "whole"
    pareto("--generations", 3, "--out", run)
    return run


def brute_force_front(evaluated, cost):
    """Each network no other beats: none with error and cost both no worse and one better, nor
    an earlier twin (the same error and cost)."""
    front = []
    for a in evaluated:
        ea = 1 - a["val_acc"]
        if not any((1 - b["val_acc"] <= ea and b[cost] <= a[cost] and (1 - b["val_acc"] < ea or b[cost] < a[cost]))
                   or (1 - b["val_acc"] == ea and b[cost] == a[cost] and b["id"] < a["id"]) for b in evaluated):
            front.append(a["id"])
    return sorted(front)


def evaluated(run):
    out = []
    for e in events(run):
        if e["event"] == "start":
            out.append({"id": 0, **e})
        elif e["event"] == "child" and e["val_acc"] is not None and not e["failed"]:
            out.append(e)
    return out


@pytest.mark.parametrize("cost", ["params", "macs"])
def test_the_front_is_the_non_dominated_set_of_everything_evaluated(uninterrupted, tmp_path, cost):
    if cost == "params":
        run = uninterrupted
    else:
        run = tmp_path / "macs"
        pareto("--generations", 2, "--cost", cost, "--out", run, "--seed", 1)
    nets = evaluated(run)
    doc = json.loads((run / "front.json").read_text())
    assert doc["cost"] == cost and doc["evaluated"] == len(nets)
    assert sorted(front_ids(run)) == brute_force_front(nets, cost)
    assert 1 < len(doc["members"]) < len(nets)  # a front, not everything nor one network
    by_id = {n["id"]: n for n in nets}
    data = load_dataset("digits", subset=600, seed=0 if cost == "params" else 1)
    for m in doc["members"]:  # each member saved as scored: its costs, and its test accuracy re-measured
        net = Network.load(run / m["path"])
        assert (net.num_params(), net.macs()) == (m["params"], m["macs"]) == (by_id[m["id"]]["params"],
                                                                            by_id[m["id"]]["macs"])
        assert m["val_acc"] == by_id[m["id"]]["val_acc"]
        assert evaluate(net, data.test_x, data.test_y)[0] == m["test_acc"]
    res = json.loads((run / "results.json").read_text())
    best = max(doc["members"], key=lambda m: m["val_acc"])
    assert res["final"] == {k: best[k] for k in ("val_acc", "test_acc", "params")}
    assert res["front"] == doc["members"] and (run / "pareto.png").stat().st_size > 0
    assert sorted(p.name for p in (run / "front").iterdir()) == sorted(str(i) for i in front_ids(run))


def test_a_run_resumed_with_more_generations_equals_an_uninterrupted_one(uninterrupted, tmp_path):
    """One generation, then --resume with --generations 3: the events, the front and every front
    member's weights are those of three generations in one go (CPU, the same seed)."""
    run = tmp_path / "pieces"
    pareto("--generations", 1, "--out", run)
    assert front_ids(run) != front_ids(uninterrupted) or len(evaluated(run)) < len(evaluated(uninterrupted))
    pareto("--resume", run, "--generations", 3)
    assert untimed(run) == untimed(uninterrupted)
    assert (run / "front.json").read_text() == (uninterrupted / "front.json").read_text()
    for i in front_ids(run):
        a, b = (torch.load(r / "front" / str(i) / "weights.pt", weights_only=True) for r in (run, uninterrupted))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (run / "front").iterdir()) == sorted(str(i) for i in front_ids(run))


def checkpointed_generation(run) -> int:
    try:  # written atomically (a rename), so a read sees the old file or the new one
        return torch.load(run / "checkpoint.pt", weights_only=True)["state"]["generation"]
    except FileNotFoundError:
        return -1


def test_a_killed_run_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path):
    """SIGKILL once a generation has checkpointed (perhaps mid-way through the next); the same
    command with --resume ends where the uninterrupted run ended, events and front alike."""
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "nash", "pareto", *TINY, "--generations", "3"]
    p = subprocess.Popen([*cmd, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while checkpointed_generation(run) < 1:  # the checkpoint, not the event: it is written just after
        assert p.poll() is None and time.time() < deadline, "the run never finished a generation"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (run / "results.json").exists()
    resumed_after = checkpointed_generation(run)
    r = subprocess.run([*cmd, "--resume", str(run)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming after generation {resumed_after}" in r.stderr and resumed_after >= 1
    assert untimed(run) == untimed(uninterrupted)
    assert (run / "front.json").read_text() == (uninterrupted / "front.json").read_text()


def test_recovery_brings_a_shrunk_child_closer_to_its_parent():
    """Every shrinking move applicable to a trained network (removed blocks, pruned filters,
    separable convs), then recover(): the child's logits on held-out images are nearer the
    parent's than right after the move. Measured: at most 0.29x of the distance (40 moves, 4
    parents); half of it fails a recovery that barely moves."""
    data = load_dataset("digits", subset=600, seed=0)
    torch.manual_seed(0)
    net = start_net(1, 10, (16, 32), data.image_size)
    net, _ = random_morphisms(net, 2, rng=0, calibrate=data.train_x[:64], kinds=("deepen",))  # blocks to remove
    sgdr_train(net, data.train_x, data.train_y, 10, batch_size=64, seed=0)
    moves = shrinks(net)
    assert {m.kind for m in moves} == {"remove_block", "prune_filters", "separable"}
    for move in moves:
        child, _ = move.apply(net)
        before = output_distance(net, child, data.val_x)
        rec = recover(child, net, data.train_x, 40, 0.05, 64, seed=1, aug=data.augment)
        after = output_distance(net, child, data.val_x)
        assert rec.failed is None and rec.steps == 40
        assert after < 0.5 * before, (str(move), before, after)


def test_export_max_params_takes_the_best_front_member_under_the_limit(uninterrupted, tmp_path):
    members = json.loads((uninterrupted / "front.json").read_text())["members"]
    params = sorted(m["params"] for m in members)
    for limit in params[:-1]:  # each member's own count: it fits, the next dearer does not
        want = max((m for m in members if m["params"] <= limit), key=lambda m: m["val_acc"])
        assert want["params"] == limit  # on a front, the dearest that fits is the most accurate
        r = CliRunner().invoke(main, ["export", str(uninterrupted), "--max-params", str(limit), "--format", "python",
                                      "--out", str(tmp_path / f"m{limit}.py")])
        assert r.exit_code == 0, r.output
        assert f"front member {want['id']}:" in r.output and f"front/{want['id']}/weights.pt" in r.output
    r = CliRunner().invoke(main, ["export", str(uninterrupted), "--max-params", "1000k", "--format", "python",
                                  "--out", str(tmp_path / "all.py")])
    best = max(members, key=lambda m: m["val_acc"])
    assert r.exit_code == 0 and f"front member {best['id']}:" in r.output
    smallest_macs = min(m["macs"] for m in members)
    r = CliRunner().invoke(main, ["export", str(uninterrupted), "--max-macs", str(smallest_macs), "--format",
                                  "python", "--out", str(tmp_path / "macs.py")])
    assert r.exit_code == 0 and "front member" in r.output
    # none fits: one line, exit 2, nothing written
    r = CliRunner().invoke(main, ["export", str(uninterrupted), "--max-params", f"{params[0] - 1}",
                                  "--out", str(tmp_path / "none.pt2")])
    assert r.exit_code == 2 and "no network on" in r.output and f"{params[0]:,} params" in r.output
    assert not (tmp_path / "none.pt2").exists()


def test_export_limit_on_a_single_network_run(tmp_path):
    torch.manual_seed(0)
    net = start_net(1, 10, (8, 16), 8)
    net.save(tmp_path / "run" / "best")
    r = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--max-params", "1k", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "over --max-params 1k" in r.output and not (tmp_path / "a").exists()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--max-params", "2k", "--format", "python",
                                  "--out", str(tmp_path / "b.py")])
    assert r.exit_code == 0 and (tmp_path / "b.py").is_file()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--max-params", "2kb"])
    assert r.exit_code == 2 and "--max-params" in r.output


@pytest.mark.parametrize("args, words", [
    (["--proposals", "2", "--children", "4"], "proposals (2) must be at least children (4)"),
    (["--cost", "flops"], "unknown cost 'flops'"),
    (["--approximate-share", "1.5"], "approximate_share must be in [0, 1]"),
    (["--max-params", "1k", "--widths", "64,128"], "over --max-params 1k"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, words):
    r = CliRunner().invoke(main, ["pareto", "--subset", "200", "--out", str(tmp_path / "x"), *args])
    assert r.exit_code == 2 and words in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x").exists()


def test_non_dominated_and_the_density_of_a_front():
    rng = random.Random(0)
    pts = [(i, rng.choice([0.1, 0.2, 0.3]), rng.choice([10, 20, 30])) for i in range(40)]
    kept = non_dominated(pts)
    as_dicts = [{"id": i, "val_acc": 1 - e, "c": c} for i, e, c in pts]
    assert sorted(kept) == brute_force_front(as_dicts, "c")
    # a lone expensive member is in the sparse part of the cost axis: drawn most often
    w = inverse_density([100, 110, 120, 100_000], [100, 110, 120, 100_000])
    assert w[3] == max(w) and w[3] > 2 * w[1]
    cfg = ParetoConfig(generations=2)
    assert cfg.resumed_with({"generations": 5}).generations == 5
    with pytest.raises(Exception, match="cannot change"):
        cfg.resumed_with({"children": 3})


def test_a_budget_sizes_the_generations_and_holds(tmp_path):
    """On a 12 s budget: generations while they fit, the last one sized to the time left, the
    run within the searchers' stated slack (25% + 5 s, test_searchers.py) and in the shared shape."""
    from nash.search import run_searcher
    cfg = ParetoConfig(data="digits", subset=600, device="cpu", widths=(16, 32), children=4, proposals=8,
                       batch_size=64, budget=12.0)
    res = run_searcher("pareto", cfg, out=tmp_path / "run")
    assert res["seconds"] <= 12 * 1.25 + 5.0
    gens = [e for e in events(tmp_path / "run") if e["event"] == "generation"]
    assert res["generations"] == len(gens) >= 2
    assert all(1 <= g["epochs"] <= cfg.child_epochs and 1 <= g["children"] <= cfg.children for g in gens)
    assert set(res["final"]) == {"val_acc", "test_acc", "params"} and res["curve"]
    assert [a for _, a in res["curve"]] == sorted(a for _, a in res["curve"])
