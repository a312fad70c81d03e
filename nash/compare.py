"""`nash compare`: every chosen searcher under the same budget, data and split, over seeds.

Run (method, seed) one after another, each in its own run directory `OUT/<method>-seed<k>`
(a finished one is not re-run; an unfinished one is resumed), or with the ray executor each as
one Ray task at once (the worker writes its run directory: a shared file system on a cluster),
then write

- compare.md: method, test accuracy mean +- std over seeds, parameters, search seconds, total
  seconds, and whether the lead over `random` and over `none` exceeds the seed spread;
- compare.json: the same numbers and every run's results;
- compare.png: best validation accuracy against wall-clock, one line per method (the mean over
  seeds), the seeds' range as a band.

Seed k gives every method the same train/validation split and the same start net.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

from .errors import OptionError
from .rundir import RunDir, atomic_write_bytes, atomic_write_json
from .version import describe

CONFIG = "compare-config.json"
CLIMB, RETRAIN = "nash", "retrain"  # retrain trains the final architecture of the climb of its seed
SNAPSHOT = "start"  # the start network every run of the comparison begins from


def _mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def parse_sets(sets) -> dict:
    """["darts.channels=8", "widths=[8,16]"] -> {"darts": {"channels": 8}, "*": {"widths": [8, 16]}};
    a value is read as JSON where it parses, else kept as text."""
    out = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise OptionError(f"--set {item!r}: give FIELD=VALUE or METHOD.FIELD=VALUE")
        method, _, field = key.strip().rpartition(".")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        out.setdefault(method or "*", {})[field] = value
    return out


def run_one(method: str, path: str, cfg, quiet: bool, device=None) -> dict:
    """One run of a comparison, new (cfg) or resumed (cfg None), where an executor put it;
    `device`: the device the executor gave it, for a config that says "auto"."""
    from .progress import Reporter
    from .search import run_searcher
    rep = Reporter(quiet)
    # a new run whose directory holds a run now was begun by an earlier attempt of this call
    # (the ray executor retries a call whose worker was lost): go on from its checkpoint
    if cfg is None or (Path(path) / "config.json").exists():
        return run_searcher(method, resume=path, reporter=rep)
    # the device the executor placed the run on: a Ray GPU task sees only its own GPU (as cuda:0),
    # so a --device of cuda:1 names a device the worker does not have
    if device is not None:
        cfg = dataclasses.replace(cfg, device=str(device))
    return run_searcher(method, cfg, out=path, reporter=rep)


def run_compare(methods: list[str], seeds: int, common: dict, overrides: dict, out, quiet: bool = True,
                progress=None, executor=None) -> str:
    """Run or resume the comparison in `out`; return the table (markdown). `overrides` maps a
    method (or "*" for every method that has the field) to config fields. `executor` runs the
    runs (default: here, one after another)."""
    from .search import searcher
    from .search.executors import LocalExecutor

    for m in methods:
        searcher(m)  # unknown names fail before anything runs
    if not methods:
        raise OptionError("--methods is empty")
    if RETRAIN in methods and CLIMB not in methods:
        raise OptionError(f"{RETRAIN} trains the architecture the {CLIMB} run of its seed ends with: add {CLIMB} to "
                          f"--methods")
    out = Path(out)
    for m in overrides:
        if m != "*":
            searcher(m)
    configs, start = _configs(methods, seeds, common, overrides)  # every config checked before anything is written
    if start is not None:  # the start network is kept in the comparison folder; the runs start from that copy
        snapshot = str((out / SNAPSHOT).resolve())
        overrides = {**overrides, "*": {**overrides["*"], "start": snapshot, "new_head": False}}
        configs = {k: dataclasses.replace(c, start=snapshot) if hasattr(c, "start") else c for k, c in configs.items()}
    for (m, seed), c in configs.items():  # retrain starts from the climb of its seed, whatever it began with
        if m == RETRAIN:
            configs[(m, seed)] = dataclasses.replace(c, start=str((out / f"{CLIMB}-seed{seed}" / "best").resolve()),
                                                     new_head=False)
    setup = {"methods": methods, "seeds": seeds, "common": common, "overrides": overrides}
    if (out / CONFIG).exists():
        old = RunDir(out).read_json(CONFIG)
        if {k: old.get(k) for k in ("common", "overrides")} != {k: setup[k] for k in ("common", "overrides")}:
            raise OptionError(f"{out} holds a comparison with other settings; choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise OptionError(f"{out} is not empty and holds no comparison; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if start is not None and not (out / SNAPSHOT).exists():
        start.save(out / SNAPSHOT)
    atomic_write_json(out / CONFIG, setup)

    runs, versions = {}, {}
    # two waves: retrain reads the architecture its seed's climb ends with, so it runs after every
    # other run (at once under ray; here, one after another)
    for wave in ([m for m in methods if m != RETRAIN], [m for m in methods if m == RETRAIN]):
        todo = []
        for seed in range(seeds):
            for m in wave:
                path = out / f"{m}-seed{seed}"
                if (path / "results.json").exists():
                    runs[(m, seed)] = RunDir(path).read_json("results.json")
                    continue
                resume = (path / "config.json").exists()
                where = path if executor is None or executor.in_process else path.resolve()  # a worker's cwd differs
                todo.append((m, seed, (m, str(where), None if resume else configs[(m, seed)], quiet)))

        def done(i, res, todo=todo):
            m, seed, _ = todo[i]
            runs[(m, seed)] = res
            if progress is not None:
                progress(m, seed, res)

        (executor or LocalExecutor()).run_many(run_one, [args for _, _, args in todo], on_done=done)
    for (m, seed) in runs:  # the code each run was made with (config.json keeps it)
        versions[f"{m}-seed{seed}"] = RunDir(out / f"{m}-seed{seed}").config.get("version")
    runs = {(m, s): runs[(m, s)] for s in range(seeds) for m in methods if (m, s) in runs}  # table order
    rows = summarise(methods, seeds, runs)
    table = to_markdown(rows, common, versions)
    atomic_write_bytes(out / "compare.md", (table + "\n").encode())
    atomic_write_json(out / "compare.json", {"setup": setup, "rows": rows, "versions": versions,
                                             "runs": {f"{m}-seed{s}": r for (m, s), r in runs.items()}})
    plot_curves(methods, seeds, runs, out / "compare.png", common.get("budget"))
    return table


def ignoring_start(methods) -> list[str]:
    """The methods that search a space of their own and so do not use a start network."""
    from .search import SEARCHERS
    return [m for m in methods if "start" not in {f.name for f in dataclasses.fields(SEARCHERS[m].config)}]


def _configs(methods, seeds, common, overrides) -> tuple[dict, object]:
    """((method, seed) -> the run's config, the start Network or None): every field given by
    `--set` converted to its type and every config checked against the data (loaded once) and
    the device, so that a bad setting fails in one line before the comparison writes anything.
    A start network (a path, a Network or an nn.Module) is loaded or imported once; `nash` and
    `none` start from its weights, `random` from fresh weights drawn from each candidate's seed."""
    from .search import SEARCHERS, load_data
    from .search.contract import coerce_field, pick_device
    from .search.start import start_network
    pick_device(common.get("device") or "auto")
    star = dict(overrides.get("*", {}))
    given_start = star.pop("start", None)
    new_head = bool(star.pop("new_head", False))
    overrides = {**overrides, "*": star}
    data = load_data(SEARCHERS[next(m for m in methods if m != RETRAIN)].make(**common))
    start = None if given_start is None else start_network(given_start, data, 0 if new_head else None)
    configs = {}
    for seed in range(seeds):
        for m in methods:
            cls = SEARCHERS[m].config
            fields = {f.name for f in dataclasses.fields(cls)}
            kw = {**common, "seed": seed}
            kw.update({k: coerce_field(cls, k, v, f"--set {k}") for k, v in overrides.get("*", {}).items()
                       if k in fields})
            for k, v in overrides.get(m, {}).items():
                if k not in fields:
                    raise OptionError(f"--set {m}.{k}: {m} has no field {k!r}")
                kw[k] = coerce_field(cls, k, v, f"--set {m}.{k}")
            if start is not None and "start" in fields:
                kw["start"] = start
            if m == RETRAIN:  # the climb's end, once it exists (run_compare points at it)
                kw["start"] = f"{CLIMB}-seed{seed}/best"
            configs[(m, seed)] = SEARCHERS[m].make(**kw)
    unknown = [k for k in overrides.get("*", {})
               if not any(k in {f.name for f in dataclasses.fields(SEARCHERS[m].config)} for m in methods)]
    if unknown:
        raise OptionError(f"--set {unknown[0]}: none of the methods ({', '.join(methods)}) has a field {unknown[0]!r}")
    for (m, _), cfg in configs.items():
        if m != RETRAIN:  # retrain's network is checked when it runs, after the climb has made it
            cfg.check_data(data)
    return configs, start


def summarise(methods, seeds, runs) -> list[dict]:
    rows = []
    for m in methods:
        rs = [runs[(m, s)] for s in range(seeds) if (m, s) in runs]
        acc, std = _mean_std([r["final"]["test_acc"] for r in rs])
        rows.append({"method": m, "seeds": len(rs), "test_acc": acc, "test_std": std,
                     "test_accs": [r["final"]["test_acc"] for r in rs],
                     "params": _mean_std([r["final"]["params"] for r in rs])[0],
                     "search_seconds": _mean_std([r.get("search_seconds", 0.0) for r in rs])[0],
                     "seconds": _mean_std([r["seconds"] for r in rs])[0],
                     "steps": _mean_std([r.get("steps") for r in rs])[0]})
    by = {r["method"]: r for r in rows}
    for r in rows:
        for base in ("random", "none"):
            b = by.get(base)
            if b is None or r["method"] == base:
                r[f"lead_{base}"] = None
                continue
            lead = r["test_acc"] - b["test_acc"]
            spread = math.hypot(r["test_std"] or 0.0, b["test_std"] or 0.0) if r["test_std"] is not None \
                and b["test_std"] is not None else None
            r[f"lead_{base}"] = {"lead": lead, "spread": spread,
                                 "exceeds": None if spread is None else abs(lead) > spread}
    return rows


def _lead(x) -> str:
    if x is None:
        return "-"
    verdict = "n/a (1 seed)" if x["exceeds"] is None else ("yes" if x["exceeds"] else "no")
    return f"{x['lead']:+.4f} ({verdict})"


def to_markdown(rows, common, versions: dict | None = None) -> str:
    lines = [f"data {common.get('data')}" + (f" (subset {common['subset']})" if common.get("subset") else "")
             + f", budget {common.get('budget'):.0f}s per run",
             "",
             "| method | test acc (mean +- std) | seeds | params | steps | search s | total s | lead over random "
             "| lead over none |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        std = f" +- {r['test_std']:.4f}" if r["test_std"] is not None else ""
        steps = f"{r['steps']:.1f}" if r["steps"] is not None else "-"
        lines.append(f"| {r['method']} | {r['test_acc']:.4f}{std} | {r['seeds']} | {r['params']:,.0f} | {steps} | "
                     f"{r['search_seconds']:.0f} | {r['seconds']:.0f} | {_lead(r['lead_random'])} | "
                     f"{_lead(r['lead_none'])} |")
    lines += ["", "A lead 'exceeds the seed spread' when it is larger than sqrt(std_a^2 + std_b^2) of the two "
              "methods' test accuracies over seeds."]
    made_by = {}
    for run, v in (versions or {}).items():
        made_by.setdefault(describe(v), []).append(run)
    if len(made_by) > 1:
        lines += ["", "**These runs come from different versions of the code:** " +
                  "; ".join(f"{d}: {', '.join(sorted(rs))}" for d, rs in sorted(made_by.items()))]
    elif made_by:
        lines += ["", f"Code: {next(iter(made_by))}."]
    return "\n".join(lines)


def plot_curves(methods, seeds, runs, path, budget) -> None:
    """Best validation accuracy against wall-clock: per method the mean over seeds of each
    seed's step curve on a common time grid, and the seeds' range as a band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .draw import save_figure
    fig = Figure(figsize=(7, 4.5))  # no pyplot: no process-wide backend state
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    horizon = budget or max((r["seconds"] for r in runs.values()), default=1.0)
    grid = [horizon * i / 200 for i in range(201)]
    for m in methods:
        curves = [runs[(m, s)].get("curve", []) for s in range(seeds) if (m, s) in runs]
        curves = [c for c in curves if c]
        if not curves:
            continue
        series = [[_at(c, t) for t in grid] for c in curves]
        pts = [(t, [v[i] for v in series if v[i] is not None]) for i, t in enumerate(grid)]
        pts = [(t, vs) for t, vs in pts if vs]
        if not pts:
            continue
        ts = [t for t, _ in pts]
        line = ax.plot(ts, [statistics.fmean(vs) for _, vs in pts], label=m)[0]
        ax.fill_between(ts, [min(vs) for _, vs in pts], [max(vs) for _, vs in pts], alpha=0.2,
                        color=line.get_color())
    # zoom past the first tenth of the budget: the untrained start net (chance level) would
    # squash the part where the methods differ
    later = [acc for c in (runs[(m, s)].get("curve", []) for m in methods for s in range(seeds) if (m, s) in runs)
             for t, acc in c if t >= 0.1 * horizon]
    if later:
        ax.set_ylim(max(0.0, min(later) - 0.02), min(1.0, max(later) + 0.01))
    ax.set(xlabel="wall-clock seconds", ylabel="best validation accuracy so far",
           title="anytime performance (mean over seeds; band: min-max)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def _at(curve, t):
    """The curve's value at time t (a step function), None before its first point."""
    v = None
    for s, acc in curve:
        if s > t:
            break
        v = acc
    return v
