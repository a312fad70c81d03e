"""The command line's options are generated from the config dataclasses (nash/cli_options.py),
so a default lives in one place and the CLI, `nash compare` and the Python API cannot disagree."""
import dataclasses
import json
from dataclasses import dataclass, field

import click
import pytest
from click.testing import CliRunner

from nash.cli import main
from nash.cli_options import cli_fields, config_options, field_default
from nash.search import SEARCHERS, ClimbConfig, DartsConfig

CONFIGS = sorted({s.config for s in SEARCHERS.values()}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_says_what_it_is(cls):
    missing = [f.name for f in dataclasses.fields(cls) if not str(f.metadata.get("help", "")).strip()]
    assert not missing, f"{cls.__name__}: fields without metadata help: {missing}"


@pytest.mark.parametrize("command, cls", [("climb", ClimbConfig), ("darts", DartsConfig),
                                          ("train-genotype", DartsConfig)])
def test_an_option_left_out_is_the_config_default(command, cls):
    cmd = main.commands[command]
    with cmd.make_context(command, ["DARTS_V2"] if command == "train-genotype" else []) as ctx:
        params = ctx.params
    fields = {f.name: f for f in dataclasses.fields(cls)}
    generated = [n for n in params if n in fields]
    assert len(generated) >= (5 if command == "train-genotype" else len(fields) - 2), generated
    for name in generated:
        assert params[name] == field_default(fields[name]), (command, name, params[name])
    if command != "train-genotype":
        assert cls(**{n: params[n] for n in generated}) == cls()  # nothing given: the default config


def test_options_read_their_text_as_the_field_type():
    cmd = main.commands["climb"]
    with cmd.make_context("climb", ["--widths", "8,16", "--budget", "1h30m", "--max-growth", "3",
                                    "--new-head", "--steps", "2"]) as ctx:
        p = ctx.params
    assert p["widths"] == (8, 16) and p["budget"] == 5400.0 and p["max_growth"] == 3.0 and p["new_head"] is True
    assert p["steps"] == 2
    with main.commands["darts"].make_context("darts", ["--order", "2", "--select", "pt", "--no-auxiliary"]) as ctx:
        p = ctx.params
    assert p["order"] == 2 and p["selector"] == "pt" and p["auxiliary"] is False


@pytest.mark.parametrize("args, words", [
    (["climb", "--widths", "8,x"], ["--widths", "'8,x'", "comma-separated"]),
    (["climb", "--budget", "soon"], ["--budget", "'soon'", "duration"]),
    (["climb", "--schedule", "fast"], ["--schedule", "'fast'", "budget"]),
    (["darts", "--order", "3"], ["--order", "'3'"]),
])
def test_bad_option_text_is_one_line(tmp_path, args, words):
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, (r.output, r.exception)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nash: error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out").exists()


def test_a_field_can_opt_out_or_rename_its_option():
    @dataclass
    class Toy:
        kept: int = field(default=3, metadata={"help": "kept"})
        hidden: str = field(default="x", metadata={"help": "Python only", "cli": False})
        picked: str = field(default="a", metadata={"help": "renamed", "option": "--pick", "choices": ("a", "b")})
        sizes: tuple[int, ...] = field(default=(1, 2), metadata={"help": "sizes"})

    @click.command()
    @config_options(Toy)
    def toy(**kw):
        click.echo(json.dumps(kw))

    r = CliRunner().invoke(toy, ["--pick", "b", "--sizes", "4,5"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"kept": 3, "picked": "b", "sizes": [4, 5]}
    assert CliRunner().invoke(toy, ["--hidden", "y"]).exit_code == 2
    assert [f.name for f, _ in cli_fields(Toy, overrides={"kept": {"cli": False}})] == ["picked", "sizes"]
    with pytest.raises(TypeError, match="unknown option keys"):
        cli_fields(Toy, overrides={"kept": {"hlep": "typo"}})


def test_nash_darts_and_nash_compare_search_the_same_supernet(tmp_path, monkeypatch):
    """`--layers` left out means the space's default cells (5 per stage for nb201) in both."""
    for drawing in ("nash.search.darts.draw_network", "nash.search.darts.draw_genotype", "nash.darts.search.plot_alphas",
                    "nash.darts.search.plot_diagnostics", "nash.compare.plot_curves"):
        monkeypatch.setattr(drawing, lambda *a, **k: None, raising=False)  # most of the time, and not the point
    tiny = ["--epochs", "1", "--channels", "2", "--batch-size", "32", "--train-epochs", "1",
            "--train-channels", "2", "--train-layers", "1", "--train-batch-size", "32"]
    r = CliRunner().invoke(main, ["darts", "--space", "nb201", *tiny, "--subset", "40", "--device", "cpu", "--quiet",
                                  "--out", str(tmp_path / "darts")])
    assert r.exit_code == 0, (r.output, r.exception)
    sets = [f"--set=darts.{tiny[i][2:].replace('-', '_')}={tiny[i + 1]}" for i in range(0, len(tiny), 2)]
    r = CliRunner().invoke(main, ["compare", "--methods", "darts", "--seeds", "1", "--budget", "10m", "--subset", "40",
                                  "--device", "cpu", "--set", "darts.space=nb201", *sets, "--quiet",
                                  "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, (r.output, r.exception)

    def supernet(run):
        start = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()
                 if json.loads(line)["event"] == "darts_start"]
        config = json.loads((run / "config.json").read_text())["config"]
        return {k: v for k, v in start[0].items() if k not in ("time", "elapsed")}, config["layers"]

    alone, in_compare = supernet(tmp_path / "darts"), supernet(tmp_path / "cmp" / "darts-seed0")
    assert alone == in_compare and alone[0]["space"] == "nb201" and alone[1] is None
