"""experiments/scaling.py --report-only: the study's table from the run directories finished so far,
with each method's lead over `none` paired seed by seed, the machine's speed per run and the code
versions (a study spread over sittings must be readable before its comparisons are complete)."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scaling.py"


def load_script():
    spec = importlib.util.spec_from_file_location("scaling_study", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_run(root: Path, budget: str, method: str, seed: int, acc: float, *, commit="c" * 40, steps=None,
             finished=True, epochs=((1, 10.0), (5, 50.0))):
    path = root / budget / f"{method}-seed{seed}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"version": {"nash": "0.1.0", "commit": commit}}))
    evs = [{"event": "plan", "elapsed": 12.5}] if method == "nash" else \
        [{"event": "epoch", "epoch": e, "elapsed": t} for e, t in epochs]
    (path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in evs) + "\n")
    if finished:
        res = {"method": method, "final": {"test_acc": acc, "val_acc": acc, "params": 1000}}
        if steps is not None:
            res["steps"] = steps
        (path / "results.json").write_text(json.dumps(res))


def test_report_only_pairs_seeds_and_reads_unfinished_studies(tmp_path, capsys):
    scaling = load_script()
    # 2m: seed 0 on a slow stretch of the machine, seed 1 on a fast one; nash leads by 0.01 in each
    fake_run(tmp_path, "2m", "nash", 0, 0.80, steps=1)
    fake_run(tmp_path, "2m", "none", 0, 0.79)
    fake_run(tmp_path, "2m", "nash", 1, 0.90, steps=2)
    fake_run(tmp_path, "2m", "none", 1, 0.89)
    fake_run(tmp_path, "4m", "nash", 0, 0.95, steps=3, commit="d" * 40)
    fake_run(tmp_path, "4m", "none", 0, 0.96)
    fake_run(tmp_path, "4m", "random", 0, 0.50, finished=False)  # still running: not in the table
    rc = scaling.main(["--budgets", "4m,2m", "--out", str(tmp_path), "--report-only"])
    assert rc == 0
    data = json.loads((tmp_path / "scaling.json").read_text())
    leads = {(r["budget"], r["method"]): r for r in data["leads"]}
    # unpaired, the seeds' spread (0.07) swamps the 0.01 lead; paired it is exact in both seeds
    assert leads[("2m", "nash")]["lead"] == pytest.approx(0.01)
    assert leads[("2m", "nash")]["lead_std"] == pytest.approx(0.0, abs=1e-12)
    assert leads[("4m", "nash")]["lead"] == pytest.approx(-0.01) and leads[("4m", "nash")]["seeds"] == 1
    rows = {(r["budget"], r["method"]): r for r in data["rows"]}
    assert ("4m", "random") not in rows and rows[("2m", "nash")]["steps"] == pytest.approx(1.5)
    md = (tmp_path / "scaling.md").read_text()
    assert md.index("| 2m |") < md.index("| 4m |")  # budgets in order of length, whatever the argument's order
    assert "+0.0100 +- 0.0000 (2)" in md
    assert "| 2m | none-seed0 | 0.7900 | 1,000 | - | 10.0 |" in md  # (50 - 10) s over (5 - 1) epochs
    assert "| 2m | nash-seed0 | 0.8000 | 1,000 | 1 | 12.5 |" in md  # its timing epoch
    assert "different versions of the code" in md
    assert (tmp_path / "scaling.png").stat().st_size > 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {(r["budget"], r["method"]) for r in last["leads"]} == {("2m", "nash"), ("4m", "nash")}


def test_report_only_with_nothing_finished_says_so(tmp_path, capsys):
    scaling = load_script()
    fake_run(tmp_path, "2m", "nash", 0, 0.8, finished=False)
    assert scaling.main(["--budgets", "2m", "--out", str(tmp_path), "--report-only"]) == 1
    assert "no finished runs" in capsys.readouterr().err
    assert not (tmp_path / "scaling.md").exists()
