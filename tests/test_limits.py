"""Cost limits of a climb: no candidate over one is trained, the start net is checked before
anything is written, and a climb without limits draws what it always drew."""
import json
import subprocess
import sys
import types

import pytest
import torch
from click.testing import CliRunner

import morphisms.cost as cost
from morphisms import random_morphisms, start_net
from nash.cli import main
from nash.errors import OptionError
from nash.search import ClimbConfig
from nash.search.contract import coerce_field
from nash.search.limits import LATENCY_TRIES, Limits, retry_seed
from nash.search.schedules import BudgetSchedule, PaperSchedule
from nash.units import UnitsError, format_count, parse_count

# a climb that trains almost nothing: the limits act on what is drawn, not on what is learnt
TINY = ["--steps", "2", "--n-neigh", "4", "--n-nm", "3", "--epoch-neigh", "1", "--epoch-final", "1",
        "--pretrain-epochs", "1", "--widths", "8,16", "--subset", "200", "--seed", "1", "--quiet", "--device", "cpu"]
# below what TINY's children reach unlimited (checked below), above its start net (1,442 / 23,200)
MAX_PARAMS, MAX_MACS = 2500, 40000


def events(run, kind):
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()
            if json.loads(line)["event"] == kind]


def untimed(evs):
    return [{k: v for k, v in e.items() if k not in ("time", "seconds", "elapsed")} for e in evs]


def climb(tmp_path, name, *extra):
    out = tmp_path / name
    r = CliRunner().invoke(main, ["climb", *TINY, *extra, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_every_trained_candidate_is_within_the_limits_and_no_limits_change_nothing(tmp_path):
    free = climb(tmp_path, "free")
    kids = events(free, "child")
    assert all("macs" not in e for e in kids)  # without a limit the events are what they always were
    # limits far above any candidate: the same draws, the same training, the same events (and the MACs)
    roomy = climb(tmp_path, "roomy", "--max-params", "1G", "--max-macs", "1G")
    roomy_kids = events(roomy, "child")
    assert untimed([{k: v for k, v in e.items() if k != "macs"} for e in roomy_kids]) == untimed(kids)
    assert not events(roomy, "over_limit")
    assert max(e["params"] for e in kids) > MAX_PARAMS and max(e["macs"] for e in roomy_kids) > MAX_MACS  # they bind
    for flag, limit, key in (("--max-params", MAX_PARAMS, "params"), ("--max-macs", MAX_MACS, "macs")):
        run = climb(tmp_path, key, flag, str(limit))
        limited = events(run, "child")
        assert len(limited) == len(kids)  # the counts only steer the draws: every child is still made
        assert all(e[key] <= limit for e in limited), [e[key] for e in limited]
        assert any(e["morphisms"] for e in limited if not e["is_parent"])
        if key == "params":  # the winner, too
            assert json.loads((run / "results.json").read_text())["final"]["params"] <= limit


def test_a_latency_limit_drops_slow_children_and_keeps_its_figures(tmp_path, monkeypatch):
    # a stand-in for the clock, a function of the architecture: what the climb does with the
    # figures is then the same on every machine
    monkeypatch.setattr(cost, "measure_latency", lambda net, *a, **k: net.macs() / 10_000)
    run = climb(tmp_path, "lat", "--max-latency-ms", "3")  # the start net: 2.32 ms
    kids = events(run, "child")
    assert kids and all(e["latency_ms"] == e["macs"] / 10_000 <= 3 for e in kids)
    dropped = events(run, "over_limit")
    assert dropped and all(e["latency_ms"] > 3 and e["attempt"] < LATENCY_TRIES for e in dropped)
    assert events(run, "start")[0]["latency_ms"] == pytest.approx(2.32)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["state"]
    assert len(state["latency"]) >= len({(e["params"], e["macs"]) for e in kids + dropped})


def test_a_start_net_over_a_limit_is_refused_in_one_line_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    for args, words in ((["--max-params", "1k"], ["start net", "1,442 parameters", "--max-params 1k", "--widths"]),
                        (["--max-macs", "20k", "--max-params", "1M"], ["23,200 MACs", "--max-macs 20k"]),
                        (["--max-params", "12q"], ["--max-params", "12q"])):
        p = subprocess.run([sys.executable, "-m", "nash", "climb", "--widths", "8,16", "--subset", "200", *args,
                            "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
        assert all(w in lines[0] for w in words), lines[0]
        assert "MACs" not in lines[0] or "--max-macs" in args  # only the limits it exceeds are named
        assert not out.exists()


def test_counts_take_k_and_M_suffixes_and_refuse_anything_else():
    assert parse_count("200k") == 200_000 and parse_count("1.5M") == 1_500_000 and parse_count("250000") == 250_000
    assert parse_count("1.1M") == 1_100_000 and parse_count("2G") == 2 * 10**9
    for bad in ("abc", "1.5", "12q", "-3", "0", "", "1.5.2k"):
        with pytest.raises(UnitsError):
            parse_count(bad)
    assert [format_count(n) for n in (200_000, 1_500_000, 999)] == ["200k", "1.5M", "999"]
    # the config holds the number, as JSON, from a command line's text or the Python API's
    cfg = ClimbConfig(max_params="200k", max_macs=3_000_000)
    assert cfg.to_json()["max_params"] == 200_000 and ClimbConfig.from_json(cfg.to_json()) == cfg
    # nash compare --set max_params=200k reads the text as the option does
    assert coerce_field(ClimbConfig, "max_params", "200k", "--set max_params") == 200_000
    with pytest.raises(OptionError, match="--set max_params"):
        coerce_field(ClimbConfig, "max_params", "lots", "--set max_params")
    for bad in (dict(max_params=0), dict(max_macs=-5), dict(max_latency_ms=0), dict(latency_batch=0),
                dict(latency_device="tpu"), dict(max_params="x")):
        with pytest.raises(OptionError):
            ClimbConfig(**bad)


def test_max_params_caps_every_move_and_a_cap_that_never_binds_changes_no_draw():
    net = start_net(1, 10, (8, 16), 8)
    x = torch.randn(3, 1, 8, 8)
    cap = int(net.num_params() * 1.3)
    for s in range(6):
        free, free_moves = random_morphisms(net, 4, rng=s)
        capped, moves = random_morphisms(net, 4, rng=s, max_params=cap)
        assert capped.num_params() <= cap
        assert torch.allclose(capped.eval()(x), net.eval()(x), atol=1e-5)
        roomy, roomy_moves = random_morphisms(net, 4, rng=s, max_params=10**9, max_macs=10**12)
        assert roomy_moves == free_moves
        assert all(torch.equal(a, b) for a, b in zip(roomy.state_dict().values(), free.state_dict().values()))
    assert any(random_morphisms(net, 4, rng=s)[0].num_params() > cap for s in range(6))  # the cap binds


def test_the_tighter_of_the_growth_cap_and_max_macs_wins():
    parent = start_net(1, 10, (8, 16), 8)  # 23,200 MACs
    for max_macs, growth, want in ((30_000, 2.0, 30_000), (10**6, 2.0, 46_400), (None, 2.0, 46_400),
                                   (30_000, None, 30_000), (None, None, None)):
        cfg = ClimbConfig(max_macs=max_macs, max_growth=growth)
        climber = types.SimpleNamespace(cfg=cfg, limits=Limits.of(cfg))
        assert BudgetSchedule(climber).max_macs(parent) == want
        assert PaperSchedule(climber).max_macs(parent) == max_macs  # no growth cap, the limit still


def test_retry_seeds_are_fixed_and_the_first_is_the_seed_itself():
    assert retry_seed(1234, 0) == 1234
    seeds = [retry_seed(1234, a) for a in range(LATENCY_TRIES)]
    assert len(set(seeds)) == LATENCY_TRIES and seeds == [retry_seed(1234, a) for a in range(LATENCY_TRIES)]


def random_run(tmp_path, name, **limits):
    from nash.search import RandomConfig, run_searcher
    cfg = RandomConfig(widths=(8, 16), subset=200, seed=1, device="cpu", data="digits", n_nm=3, candidates=4,
                       epoch_neigh=1, epoch_final=1, **limits)
    run_searcher("random", cfg, out=tmp_path / name)
    return tmp_path / name


def test_random_search_keeps_every_candidate_within_the_limits(tmp_path, monkeypatch):
    # random against nash under a limit must search the same space: its 15 random morphisms a
    # candidate (no budget: n_nm x 5) go far past these counts unlimited
    free = events(random_run(tmp_path, "free"), "candidate")
    assert max(e["params"] for e in free) > MAX_PARAMS and all("macs" not in e for e in free)
    for key, limit in (("max_params", MAX_PARAMS), ("max_macs", MAX_MACS)):
        got = events(random_run(tmp_path, key, **{key: limit}), "candidate")
        assert len(got) == 4 and all(e[key[4:]] <= limit for e in got), [e[key[4:]] for e in got]
    # latency: a candidate over it is drawn again from another seed, the figures kept
    monkeypatch.setattr(cost, "measure_latency", lambda net, *a, **k: net.macs() / 10_000)
    # 15 morphisms make candidates of 45-780 "ms" here: at 60, candidates 1 and 3 are found on a
    # later draw, 0 and 2 on none of their LATENCY_TRIES and are left out
    run = random_run(tmp_path, "lat", max_latency_ms=60.0)
    got, dropped = events(run, "candidate"), events(run, "over_limit")
    assert got and all(e["latency_ms"] == e["macs"] / 10_000 <= 60 for e in got)
    assert dropped and all(e["latency_ms"] > 60 and e["attempt"] < LATENCY_TRIES for e in dropped)
    assert len(got) < 4 and {e["candidate"] for e in dropped} > {e["candidate"] for e in got}  # some left out
    assert json.loads((run / "results.json").read_text())["final"]["params"] <= max(e["params"] for e in got)
