"""Every way a user can get the command line wrong ends the same way: one line on stderr that
names the problem, exit status 2, no traceback, and nothing new written. Each error comes before
any training, so every case is quick."""
import pytest
from click.testing import CliRunner

from nash.cli import main
from nash.search import open_run, searcher


def damaged_run(tmp_path):
    """A climb's run directory whose checkpoint is garbage."""
    run, _ = open_run("nash", searcher("nash").config(subset=100), out=tmp_path / "run")
    (run.path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    return run.path


def broken_network(tmp_path):
    """A saved-network folder whose graph.json is not JSON."""
    path = tmp_path / "net"
    path.mkdir()
    (path / "graph.json").write_text('{"format": "nash-network", "nodes": [')
    (path / "weights.pt").write_bytes(b"")
    return path


# (command line with {dir} for the prepared folder, how to prepare it, words the line must hold)
CASES = {
    "bad budget": (["climb", "--budget", "5x"], None, ["'5x'", "duration"]),
    "missing data dir": (["climb", "--data", "cifar10", "--data-dir", "/nonexistent"], None,
                         ["/nonexistent", "not found"]),
    "unknown data set": (["climb", "--data", "nope"], None, ["'nope'", "digits"]),
    "damaged checkpoint": (["climb", "--resume", "{dir}"], damaged_run, ["checkpoint.pt", "damaged"]),
    "invalid graph for train": (["train", "{dir}"], broken_network, ["graph.json", "not valid JSON"]),
    "invalid graph for export": (["export", "{dir}"], broken_network, ["graph.json", "not valid JSON"]),
    "bad genotype": (["train-genotype", "Genotype(normal=[('bogus', 0)])"], None, ["'bogus'", "unknown op"]),
    "unknown option": (["climb", "--bogus"], None, ["--bogus"]),
    # found once the data is loaded, still before a run directory exists
    "cutout larger than the images": (["climb", "--cutout", "16"], None, ["cutout 16", "8x8"]),
    "missing start network": (["climb", "--start", "/nonexistent/net"], None, ["/nonexistent/net"]),
    "start network that is not one": (["climb", "--start", "{dir}"], broken_network, ["graph.json"]),
    "no validation split to select on": (["climb", "--val-fraction", "0"], None, ["val_fraction 0", "validation"]),
    "random search without a validation split": (["compare", "--budget", "1m", "--methods", "random,none",
                                                  "--val-fraction", "0"], None, ["validation"]),
    "device that is not here": (["climb", "--device", "cuda:7"], None, ["cuda:7"]),
    "unknown device": (["darts", "--device", "tpu9"], None, ["tpu9"]),
    # nash compare checks every run's config before it writes compare-config.json
    "compare: a field a method lacks": (["compare", "--budget", "1m", "--set", "darts.nofield=1"], None,
                                        ["darts.nofield", "no field"]),
    "compare: a field no method has": (["compare", "--budget", "1m", "--set", "nofield=1"], None, ["nofield"]),
    "compare: a value of the wrong type": (["compare", "--budget", "1m", "--set", "n_neigh=abc"], None,
                                           ["n_neigh", "int", "'abc'"]),
    "compare: a device that is not here": (["compare", "--budget", "1m", "--device", "cuda:7"], None, ["cuda:7"]),
    "compare: cutout larger than the images": (["compare", "--budget", "1m", "--methods", "nash",
                                                "--set", "cutout=16"], None, ["cutout 16"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_error_is_one_line_and_exit_status_2(tmp_path, case):
    args, prepare, words = CASES[case]
    folder = prepare(tmp_path) if prepare else None
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    # commands that would start a run get a fresh --out, which must not appear
    out = [] if args[0] == "export" or "--resume" in args else ["--out", str(tmp_path / "out")]
    r = CliRunner().invoke(main, [a.format(dir=folder) for a in args] + out)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nash: error: "), r.stderr
    assert "Traceback" not in r.output
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
