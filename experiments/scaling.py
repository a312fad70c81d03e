"""The scaling study: does nash's lead over plain training grow with the budget?

Runs `nash compare` once per budget (each in OUT/<budget>, resumable: run the same command
again after a kill and finished runs are kept), then writes

  OUT/scaling.md    method x budget: test accuracy mean +- std over seeds, parameters, steps; each
                    method's lead over none seed by seed (paired); every run with the machine's
                    speed as it saw it (seconds per start-net epoch) and its code version
  OUT/scaling.json  the same numbers
  OUT/scaling.png   test accuracy against budget, one line per method, the seeds' range as a band

    python experiments/scaling.py --data fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --subset 20000 --budgets 3m,6m,12m --out runs/scaling
    python experiments/scaling.py --budgets 1m,2m,4m --seeds 1 --largest-seeds 1   # digits, a quick look

Every budget runs --methods (default nash,none) with --seeds seeds; the largest budget runs
--largest-methods (default nash,none,random,retrain) with --largest-seeds seeds. Run it on a
quiet machine: every figure is wall-clock. Extra arguments after `--` go to `nash compare`.
--report-only runs nothing and tabulates the runs finished so far (a study spread over sittings).
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
from nash.draw import figure, save_figure  # noqa: E402
from nash.rundir import RunDir, atomic_write_bytes, atomic_write_json  # noqa: E402
from nash.version import describe  # noqa: E402


def run_budget(args, budget: str, methods: str, seeds: int, extra: list[str]) -> None:
    out = Path(args.out) / budget
    cmd = [sys.executable, "-m", "nash", "compare", "--methods", methods, "--seeds", str(seeds), "--budget", budget,
           "--data", args.data, "--out", str(out), "--quiet", *extra]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.subset:
        cmd += ["--subset", str(args.subset)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def start_epoch_seconds(method: str, evs: list[dict]) -> float | None:
    """Seconds per epoch of the start net as the run saw it: the machine's speed during the run
    (a shared host drifts; two runs compared at one budget should have seen about the same).
    A climb's is its timing epoch (the first plan event comes right after it, data loading
    included); plain training's is its mean over the run (start net throughout)."""
    if method == "nash":
        plans = [e for e in evs if e["event"] == "plan" and "elapsed" in e]
        return plans[0]["elapsed"] if plans else None
    if method == "none":
        ep = [e for e in evs if e["event"] == "epoch" and "elapsed" in e]
        if len(ep) >= 2 and ep[-1]["epoch"] > ep[0]["epoch"]:
            return (ep[-1]["elapsed"] - ep[0]["elapsed"]) / (ep[-1]["epoch"] - ep[0]["epoch"])
    return None


def read_runs(budget_dir: Path) -> list[dict]:
    """Every finished run under one budget's comparison, read from its run directory (so a study
    run over several sittings can be tabulated before its comparisons are complete)."""
    runs = []
    for path in sorted(budget_dir.glob("*-seed*")):
        if not (path / "results.json").exists():
            continue
        method, seed = path.name.rsplit("-seed", 1)
        run = RunDir(path)
        res = run.read_json("results.json")
        cfg = run.config if (path / "config.json").exists() else {}
        runs.append({"method": method, "seed": int(seed), "test_acc": res["final"]["test_acc"],
                     "params": res["final"]["params"], "steps": res.get("steps"),
                     "version": describe(cfg.get("version")), "epoch_seconds": start_epoch_seconds(method, run.events())})
    return runs


def rows_of(budget: str, runs: list[dict]) -> list[dict]:
    rows = []
    for m in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == m]
        accs = [r["test_acc"] for r in mine]
        rows.append({"budget": budget, "seconds": parse_budget(budget), "method": m, "seeds": len(mine),
                     "test_accs": accs, "test_acc": statistics.fmean(accs),
                     "test_std": statistics.stdev(accs) if len(accs) > 1 else None,
                     "params": statistics.fmean(r["params"] for r in mine),
                     "steps": statistics.fmean(r["steps"] for r in mine) if all(r["steps"] is not None for r in mine)
                     else None})
    return rows


def leads_of(budget: str, runs: list[dict], base: str = "none") -> list[dict]:
    """Each method's lead over `base`, seed by seed (the same seed's data split and start net),
    mean +- std over the seeds both have: paired, so the seeds' common part cancels."""
    by = {(r["method"], r["seed"]): r["test_acc"] for r in runs}
    out = []
    for m in dict.fromkeys(r["method"] for r in runs):
        if m == base:
            continue
        diffs = [by[(m, s)] - by[(base, s)] for (mm, s) in by if mm == m and (base, s) in by]
        if diffs:
            out.append({"budget": budget, "method": m, "seeds": len(diffs), "leads": diffs,
                        "lead": statistics.fmean(diffs), "lead_std": statistics.stdev(diffs) if len(diffs) > 1 else None})
    return out


def to_markdown(rows: list[dict], leads: list[dict], runs: dict, budgets: list[str], args) -> str:
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
    if leads:
        lb = {(r["method"], r["budget"]): r for r in leads}
        lines += ["", "Lead over none, seed by seed (same seed: same split and start net): mean +- std (seeds)", "",
                  "| method | " + " | ".join(budgets) + " |", "|---|" + "---|" * len(budgets)]
        for m in dict.fromkeys(r["method"] for r in leads):
            cells = []
            for b in budgets:
                r = lb.get((m, b))
                std = f" +- {r['lead_std']:.4f}" if r is not None and r["lead_std"] is not None else ""
                cells.append("-" if r is None else f"{r['lead']:+.4f}{std} ({r['seeds']})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Every run: test accuracy, parameters, steps; s/epoch = the start net's seconds per epoch as the "
              "run saw it (nash: its timing epoch; none: its mean), the machine's speed at the time", "",
              "| budget | run | test acc | params | steps | s/epoch | code |", "|---|---|---|---|---|---|---|"]
    for b in budgets:
        for r in sorted(runs.get(b, []), key=lambda r: (r["seed"], r["method"])):
            sec = f"{r['epoch_seconds']:.1f}" if r["epoch_seconds"] is not None else "-"
            steps = r["steps"] if r["steps"] is not None else "-"
            lines.append(f"| {b} | {r['method']}-seed{r['seed']} | {r['test_acc']:.4f} | {r['params']:,} | {steps} | "
                         f"{sec} | {r['version']} |")
    versions = {r["version"] for rs in runs.values() for r in rs}
    if len(versions) > 1:
        lines += ["", "**These runs come from different versions of the code:** " + ", ".join(sorted(versions))]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    fig = figure((7, 4.5))
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
    save_figure(fig, path, dpi=120)


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
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: tabulate and plot the runs already finished under --out")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    budgets = sorted((b.strip() for b in args.budgets.split(",") if b.strip()), key=parse_budget)
    out = Path(args.out)
    rows, leads, runs = [], [], {}
    for b in budgets:
        largest = b == budgets[-1]
        if not args.report_only:
            run_budget(args, b, args.largest_methods if largest else args.methods,
                       args.largest_seeds if largest else args.seeds, extra)
        runs[b] = read_runs(out / b)
        rows += rows_of(b, runs[b])
        leads += leads_of(b, runs[b])
    if not rows:
        print(f"no finished runs under {out}", file=sys.stderr)
        return 1
    table = to_markdown(rows, leads, runs, budgets, args)
    # temp file then rename: a kill mid-write leaves the last table, not half of one
    atomic_write_bytes(out / "scaling.md", (table + "\n").encode())
    atomic_write_json(out / "scaling.json", {"rows": rows, "leads": leads, "runs": runs})
    plot(rows, out / "scaling.png")
    print(table)
    print(json.dumps({"rows": [{k: r[k] for k in ("budget", "method", "seeds", "test_acc", "test_std", "params",
                                                  "steps")} for r in rows],
                      "leads": [{k: r[k] for k in ("budget", "method", "seeds", "lead", "lead_std")} for r in leads]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
