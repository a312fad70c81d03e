"""The front against plain scaling: does `nash pareto` find better networks for a cost than the
start net made narrower or wider?

Runs one `pareto` search on --budget, then the start net at 0.25x, 0.5x, 1x and 2x of --widths,
each trained by `none` (one cosine cycle) for the wall-clock the search took, all through
nash.search.run_searcher on the same split. Then writes

  OUT/pareto_study.md    per scaled net (a cost level): its test accuracy, the front's best
                         member (by validation accuracy) at no more cost, and which wins
  OUT/pareto_study.json  the same numbers
  OUT/pareto_study.png   test error against cost: the front as a staircase, the scaled nets as
                         labelled points

    python experiments/pareto_study.py --data digits --budget 30s --widths 16,32 --out runs/pareto-study
    python experiments/pareto_study.py --data cifar10 --data-dir ~/data --widths 32,64,128 \\
        --budget 1h --out runs/pareto-cifar

Resumable: run the same command again after a kill; finished runs are kept, an unfinished one
is resumed. Run it on a quiet machine: every run is sized by wall-clock. The last line printed
is one JSON object with the table's numbers. Bad input is one line and exit status 2, found
before anything is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nash.budget import parse_budget  # noqa: E402
from nash.errors import NashError  # noqa: E402

MULTIPLIERS = (0.25, 0.5, 1.0, 2.0)


def scaled(widths: tuple[int, ...], m: float) -> tuple[int, ...]:
    return tuple(max(1, round(w * m)) for w in widths)


def run_once(name: str, cfg, out: Path, data) -> dict:
    """A finished run's results, else the run (resumed where it has a run directory)."""
    from nash.progress import Reporter
    from nash.search import run_searcher
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    rep = Reporter(quiet=True)
    if (out / "config.json").is_file():
        return run_searcher(name, resume=out, reporter=rep, data=data)
    return run_searcher(name, cfg, out=out, reporter=rep, data=data)


def table_rows(front: list[dict], scaled_runs: list[dict], cost: str) -> list[dict]:
    """Per scaled net: the front's best member (by validation accuracy) costing no more, and the
    winner by test accuracy (a tie: neither)."""
    rows = []
    for s in scaled_runs:
        fits = [m for m in front if m[cost] <= s[cost]]
        best = max(fits, key=lambda m: (m["val_acc"], -m[cost])) if fits else None
        if best is None:
            wins = "scaled (the front has nothing this cheap)"
        elif best["test_acc"] > s["test_acc"]:
            wins = "front"
        elif best["test_acc"] < s["test_acc"]:
            wins = "scaled"
        else:
            wins = "tie"
        rows.append({"multiplier": s["multiplier"], "widths": s["widths"], cost: s[cost], "params": s["params"],
                     "scaled_test_acc": s["test_acc"], "front_id": best and best["id"],
                     "front_cost": best and best[cost], "front_test_acc": best and best["test_acc"], "wins": wins})
    return rows


def to_markdown(rows: list[dict], cost: str, args, seconds: float) -> str:
    head = (f"data {args.data}" + (f" (subset {args.subset})" if args.subset else "") +
            f"; pareto on {args.budget} ({seconds:.0f}s), each scaled start net trained as long; test accuracy")
    lines = [head, "", f"| scaled net | widths | {cost} | its test acc | front member (<= {cost}) | its test acc | wins |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        member = "-" if r["front_id"] is None else f"{r['front_id']} ({r['front_cost']:,})"
        acc = "-" if r["front_test_acc"] is None else f"{r['front_test_acc']:.4f}"
        lines.append(f"| {r['multiplier']:g}x | {','.join(map(str, r['widths']))} | {r[cost]:,} | "
                     f"{r['scaled_test_acc']:.4f} | {member} | {acc} | {r['wins']} |")
    return "\n".join(lines)


def plot(front: list[dict], scaled_runs: list[dict], cost: str, path: Path) -> None:
    from nash.draw import figure, save_figure
    fig = figure((7, 4.5))
    ax = fig.subplots()
    pts = sorted(front, key=lambda m: m[cost])
    ax.step([m[cost] for m in pts], [1 - m["test_acc"] for m in pts], where="post", color="C3", lw=2,
            label="pareto front (test error)")
    ax.scatter([m[cost] for m in pts], [1 - m["test_acc"] for m in pts], color="C3", s=24)
    ax.scatter([s[cost] for s in scaled_runs], [1 - s["test_acc"] for s in scaled_runs], color="C0", marker="s",
               s=40, label="start net scaled, trained as long")
    for s in scaled_runs:
        ax.annotate(f"{s['multiplier']:g}x", (s[cost], 1 - s["test_acc"]), textcoords="offset points",
                    xytext=(5, 5), fontsize="small")
    ax.set_xscale("log")
    ax.set(xlabel="parameters" if cost == "params" else "MACs per image", ylabel="test error",
           title="the front against width scaling at equal wall-clock")
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage block would bury the one line that matters
        print(f"pareto_study: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def main(argv=None) -> int:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--budget", required=True, help="Wall-clock of the pareto search: 30s, 10m, 1h.")
    p.add_argument("--widths", default="16,32,64", help="Start net widths (the 1x net); default 16,32,64.")
    p.add_argument("--cost", default="params", choices=("params", "macs"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/pareto-study")
    args = p.parse_args(argv)
    try:
        return study(args)
    except NashError as e:
        print(f"pareto_study: error: {e}", file=sys.stderr)
        return 2


def study(args) -> int:
    import torch

    from morphisms import Network
    from nash.allocator import keep_freed_memory
    from nash.search import NoneConfig, ParetoConfig, load_data
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise NashError(f"--widths {args.widths!r} is not a comma-separated list of integers (like 16,32,64)") from None
    budget = parse_budget(args.budget)
    common = dict(data=args.data, data_dir=args.data_dir, subset=args.subset, seed=args.seed, device=args.device)
    search = ParetoConfig(**common, widths=widths, budget=budget, cost=args.cost)
    for m in MULTIPLIERS:  # every config checked before anything is written
        NoneConfig(**common, widths=scaled(widths, m), budget=budget)
    data = load_data(search)
    search.check_data(data)
    # process-wide state, set once where this process starts (as the nash command does)
    torch.set_flush_denormal(True)
    keep_freed_memory()

    out = Path(args.out)
    print(f"pareto search: {args.budget} on {args.data}", flush=True)
    front_run = run_once("pareto", search, out / "pareto", data)
    seconds = front_run["seconds"]
    scaled_runs = []
    for m in MULTIPLIERS:
        w = scaled(widths, m)
        print(f"none at {m:g}x (widths {','.join(map(str, w))}) for {seconds:.0f}s", flush=True)
        res = run_once("none", NoneConfig(**common, widths=w, budget=seconds), out / f"none-{m:g}x", data)
        net = Network.load(out / f"none-{m:g}x" / "best")
        scaled_runs.append({"multiplier": m, "widths": list(w), "params": net.num_params(), "macs": net.macs(),
                            "test_acc": res["final"]["test_acc"], "val_acc": res["final"]["val_acc"]})
    rows = table_rows(front_run["front"], scaled_runs, args.cost)
    text = to_markdown(rows, args.cost, args, seconds)
    (out / "pareto_study.md").write_text(text + "\n")
    summary = {"data": args.data, "subset": args.subset, "budget": args.budget, "seconds": seconds,
               "cost": args.cost, "front": front_run["front"], "scaled": scaled_runs, "rows": rows}
    (out / "pareto_study.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(front_run["front"], scaled_runs, args.cost, out / "pareto_study.png")
    print(text)
    print(json.dumps({"seconds": round(seconds, 1), "cost": args.cost,
                      "rows": [{k: r[k] for k in ("multiplier", args.cost, "scaled_test_acc", "front_test_acc", "wins")}
                               for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
