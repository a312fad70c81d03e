"""The scaling study: does nash's lead over plain training grow with the budget?

Runs `nash compare` once per budget (each in OUT/<budget>, resumable: run the same command
again after a kill and finished runs are kept), then writes

  OUT/scaling.md    method x budget: test accuracy mean +- std over seeds, parameters, steps
  OUT/scaling.json  the same numbers
  OUT/scaling.png   test accuracy against budget, one line per method, the seeds' range as a band

    python experiments/scaling.py --data fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --subset 20000 --budgets 3m,6m,12m --out runs/scaling
    python experiments/scaling.py --budgets 1m,2m,4m --seeds 1 --largest-seeds 1   # digits, a quick look

Every budget runs --methods (default nash,none) with --seeds seeds; the largest budget runs
--largest-methods (default nash,none,random,retrain) with --largest-seeds seeds. Run it on a
quiet machine: every figure is wall-clock. Extra arguments after `--` go to `nash compare`.
The last line printed is one JSON object with the table's numbers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nash.budget import parse_budget  # noqa: E402


def run_budget(args, budget: str, methods: str, seeds: int, extra: list[str]) -> dict:
    out = Path(args.out) / budget
    cmd = [sys.executable, "-m", "nash", "compare", "--methods", methods, "--seeds", str(seeds), "--budget", budget,
           "--data", args.data, "--out", str(out), "--quiet", *extra]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.subset:
        cmd += ["--subset", str(args.subset)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((out / "compare.json").read_text())


def rows_of(budget: str, compare: dict) -> list[dict]:
    rows = []
    for m in compare["setup"]["methods"]:
        runs = [r for k, r in compare["runs"].items() if k.rsplit("-seed", 1)[0] == m]
        accs = [r["final"]["test_acc"] for r in runs]
        rows.append({"budget": budget, "seconds": parse_budget(budget), "method": m, "seeds": len(runs),
                     "test_accs": accs, "test_acc": statistics.fmean(accs),
                     "test_std": statistics.stdev(accs) if len(accs) > 1 else None,
                     "params": statistics.fmean(r["final"]["params"] for r in runs),
                     "steps": statistics.fmean(r["steps"] for r in runs) if all("steps" in r for r in runs) else None})
    return rows


def to_markdown(rows: list[dict], budgets: list[str], args) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["budget"]): r for r in rows}
    head = f"data {args.data}" + (f" (subset {args.subset})" if args.subset else "") + "; test accuracy mean +- std " \
           "over seeds (seeds), parameters, steps"
    lines = [head, "", "| method | " + " | ".join(budgets) + " |", "|---|" + "---|" * len(budgets)]
    for m in methods:
        cells = []
        for b in budgets:
            r = by.get((m, b))
            if r is None:
                cells.append("-")
                continue
            std = f" +- {r['test_std']:.4f}" if r["test_std"] is not None else ""
            steps = f", {r['steps']:.1f} steps" if r["steps"] is not None else ""
            cells.append(f"{r['test_acc']:.4f}{std} ({r['seeds']}); {r['params'] / 1e6:.2f}M{steps}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == m), key=lambda r: r["seconds"])
        xs = [r["seconds"] / 60 for r in mine]
        line = ax.plot(xs, [r["test_acc"] for r in mine], "-o", label=m)[0]
        ax.fill_between(xs, [min(r["test_accs"]) for r in mine], [max(r["test_accs"]) for r in mine], alpha=0.2,
                        color=line.get_color())
    ax.set_xscale("log")
    budgets = sorted({r["seconds"] / 60 for r in rows})
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])  # the budgets run, not powers of ten
    ax.minorticks_off()
    ax.set(xlabel="budget per run (minutes, log scale)", ylabel="test accuracy",
           title="test accuracy against budget (mean over seeds; band: min-max)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--budgets", default="3m,6m,12m")
    ap.add_argument("--methods", default="nash,none")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--largest-methods", default="nash,none,random,retrain")
    ap.add_argument("--largest-seeds", type=int, default=3)
    ap.add_argument("--out", default="runs/scaling")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    budgets = sorted((b.strip() for b in args.budgets.split(",") if b.strip()), key=parse_budget)
    rows = []
    for b in budgets:
        largest = b == budgets[-1]
        compare = run_budget(args, b, args.largest_methods if largest else args.methods,
                             args.largest_seeds if largest else args.seeds, extra)
        rows += rows_of(b, compare)
    out = Path(args.out)
    table = to_markdown(rows, budgets, args)
    (out / "scaling.md").write_text(table + "\n")
    (out / "scaling.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / "scaling.png")
    print(table)
    print(json.dumps({"rows": [{k: r[k] for k in ("budget", "method", "seeds", "test_acc", "test_std", "params",
                                                  "steps")} for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
