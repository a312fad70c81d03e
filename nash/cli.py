"""The `nash` command: climb, darts, train, train-genotype, show, export, demo.

Bad input ends with one line on stderr and exit status 2, never a traceback; nothing a run
directory already holds is overwritten. A searcher's options are generated from its config
dataclass (cli_options.py), so each default, type and help text is written once, there.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import click

from morphisms import GraphError, MorphismsError

from .cli_options import Parsed, config_options
from .darts import METHODS, SELECTORS, SMOOTHERS, SPACES
from .errors import NashError, OptionError
from .rundir import RunDir, default_run_path
from .search import SEARCHERS, ClimbConfig, DartsConfig, ParetoConfig, SearchConfig, StartNetConfig
from .search.executors import EXECUTORS
from .units import parse_count


# Errors a user can cause: nash's one base and the morphism engine's own.
USER_ERRORS = (NashError, MorphismsError)


def one_line_errors(fn):
    """Turn the errors a user can cause into one line on stderr and exit 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            click.echo(f"nash: error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("nash: interrupted; the last finished step is checkpointed (resume with --resume RUN_DIR)",
                       err=True)
            sys.exit(130)
        except Exception as e:  # a bug, not bad input: still one line unless asked for more
            if os.environ.get("NASH_DEBUG"):
                raise
            click.echo(f"nash: internal error: {type(e).__name__}: {e} (set NASH_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)
    return wrapper


class OneLineGroup(click.Group):
    """click's usage errors (a bad option value, an unknown option) as one line too."""

    def main(self, *args, standalone_mode=True, **kwargs):
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            click.echo(f"nash: error: {e.format_message()} (see 'nash {e.ctx.info_name if e.ctx else ''} --help')"
                       .replace("nash nash", "nash"), err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("nash: aborted", err=True)
            sys.exit(1)


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """nash: neural architecture search by network morphisms (NASH) and DARTS-family search."""
    # Process-wide state is set once, here where the process starts, never by library calls:
    # denormal floats (tiny momentum buffers and BN statistics late in a cosine cycle) take a
    # slow path on x86 CPUs; and glibc would hand each step's freed activations back to the
    # kernel and fault them in again next step (nash/allocator.py).
    import torch
    torch.set_flush_denormal(True)
    from .allocator import keep_freed_memory
    keep_freed_memory()


DATA_FIELDS = ("data", "data_dir", "subset", "device")
# --data, --data-dir, --subset and --device, alike for every command that trains
data_options = config_options(SearchConfig, only=DATA_FIELDS)


def _load_data(name, data_dir, subset, val_fraction, seed, device):
    from .data import load_dataset
    return load_dataset(name, data_dir=data_dir, val_fraction=val_fraction, subset=subset, seed=seed,
                        device=device)


# ---------------------------------------------------------------------------------- searchers

def _changes_on_resume(ctx, params: dict) -> dict:
    """The options given on a resuming command line, as config fields."""
    from click.core import ParameterSource
    return {k: v for k, v in params.items()
            if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE and k not in ("resume", "out", "quiet")}


def _run(name, cfg_kw: dict, out, resume, quiet, started, ctx=None, **kw):
    from .progress import Reporter
    from .search import run_searcher, searcher
    if resume:
        changes = _changes_on_resume(ctx, cfg_kw) if ctx is not None else {}
        return run_searcher(name, resume=resume, changes=changes, reporter=Reporter(quiet), started=started, **kw)
    return run_searcher(name, searcher(name).make(**cfg_kw), out=out, reporter=Reporter(quiet), started=started,
                        **kw)


START_FIELDS = ("start", "new_head")


def start_options(fn):
    """Where a search starts: a saved nash network (--start) or the user's own PyTorch model."""
    for option in reversed([
        click.option("--start-module", default=None, metavar="FILE.py:FACTORY", help="Start from your own PyTorch "
                     "model: FACTORY() in FILE.py returns the nn.Module (imported through torch.fx; a copy is kept "
                     "in the run directory)."),
        click.option("--start-weights", type=click.Path(), default=None, help="A state dict for --start-module's "
                     "model (torch.save(model.state_dict(), W.pt))."),
    ]):
        fn = option(fn)
    return config_options(StartNetConfig, only=START_FIELDS)(fn)


def _take_start_module(kw: dict, resume=None) -> None:
    """Replace --start-module/--start-weights in `kw` by the loaded nn.Module as `start`."""
    from .search.start import load_module
    spec, weights = kw.pop("start_module"), kw.pop("start_weights")
    if weights is not None and spec is None:
        raise OptionError("--start-weights needs --start-module (a saved nash network holds its own weights)")
    if spec is None:
        return
    if kw.get("start") is not None:
        raise OptionError("give --start or --start-module, not both")
    if resume:
        raise OptionError("--start-module with --resume: a resumed run starts from the copy in its run directory")
    kw["start"] = load_module(spec, weights)


def executor_options(fn):
    """--executor and the ray executor's options, alike for climb and compare."""
    for option in reversed([
        click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                     help="Who trains a step's candidates (compare: the runs): here one after another, or one "
                          "Ray task each, in parallel (pip install 'nash[ray]')."),
        click.option("--ray-address", default=None, help="ray: a running cluster (auto, HOST:PORT); default: a "
                     "local Ray for this run."),
        click.option("--gpus-per-candidate", type=float, default=None, help="ray: GPUs per candidate; a fraction "
                     "shares a GPU (0.25: four a GPU). Default 1 for a run on CUDA; a run on the CPU (--device cpu) "
                     "asks for none."),
        click.option("--cpus-per-candidate", type=int, default=None, help="ray: CPUs (torch threads) per "
                     "candidate. Default 1."),
    ]):
        fn = option(fn)
    return fn


def _executor(kw: dict, device=None):
    """Take the executor options out of `kw` and build the executor (ray imported only for ray)
    for a run on `device` (the --device given)."""
    from .search.executors import make_executor
    return make_executor(kw.pop("executor"), address=kw.pop("ray_address"),
                         gpus_per_candidate=kw.pop("gpus_per_candidate"),
                         cpus_per_candidate=kw.pop("cpus_per_candidate"), device=device)


def _print_results(results: dict, out_hint: str) -> None:
    if "start" in results:
        s = results["start"]
        click.echo(f"start: val {s['val_acc']:.4f} test {s['test_acc']:.4f} ({s['params']:,} params)")
    f = results["final"]
    steps = f" after {results['steps']} steps" if "steps" in results else ""
    click.echo(f"final: val {f['val_acc']:.4f} test {f['test_acc']:.4f} ({f['params']:,} params){steps}, "
               f"{results['seconds']:.0f}s")
    click.echo(f"results: {out_hint}")


@main.command()
@config_options(ClimbConfig, exclude=START_FIELDS)
@start_options
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/nash-<time>).")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory.")
@click.option("--quiet", is_flag=True, help="Log lines instead of progress bars.")
@click.option("--plan", "show_plan", is_flag=True, help="With --budget: time the start net for an epoch or two, "
              "print what the budget buys (steps, their places, candidates, rungs, predicted final size) and exit "
              "without searching or writing anything.")
@executor_options
@click.pass_context
@one_line_errors
def climb(ctx, out, resume, quiet, show_plan, **kw):
    """Hill-climb with network morphisms (NASH), then train the winner."""
    started = time.time()
    _take_start_module(kw, resume)
    executor = _executor(kw, kw.get("device"))  # not part of the run's config: a resume may change it
    if show_plan:
        try:
            _print_plan(kw, resume, started, executor)
        finally:
            executor.close()
        return
    try:
        results = _run("nash", kw, out, resume, quiet, started, ctx, executor=executor)
    finally:
        executor.close()
    _print_results(results, str(Path(results["run_dir"]) / "results.json"))


def _print_plan(kw: dict, resume, started: float, executor) -> None:
    """`nash climb --plan`: the budget schedule's plan for these options, on the stdout; the last
    line one JSON object."""
    import json
    from .search import Budget, ClimbConfig, load_data
    from .search.climb import preview_plan
    from .search.plan import no_step_note
    from .search.start import resolve_start
    if resume:
        raise OptionError("--plan shows what a new climb would plan; it does not take --resume")
    cfg = ClimbConfig(**kw)
    if cfg.budget is None:
        raise OptionError("--plan needs --budget (without one the steps are the flags': --steps, 5 by default)")
    data = load_data(cfg)
    cfg, _ = resolve_start(cfg, data)
    cfg.check_data(data)
    p = preview_plan(cfg, data, Budget.for_run(cfg.budget, started), executor)
    click.echo(f"budget {cfg.budget:.0f}s on {cfg.data} ({len(data.train_y):,} training images), "
               f"{p['parallelism']} parallel slot(s): the start net ({p['start_params']:,} params, "
               f"{p['start_macs']:,} MACs) trains an epoch in {p['epoch_seconds']:.2f}s")
    if p["steps"]:
        places = ", ".join(f"{x:.0%}" for x in p["positions"])
        rungs = " -> ".join(f"{c} x {e} ep" for c, e in p["rungs"])
        click.echo(f"{p['steps']} steps at {places} of the lineage's learning-rate cycle, {p['candidates']} candidates "
                   f"each, rungs {rungs}")
    else:
        click.echo(no_step_note(cfg.search_share))
    phases = (f"{p['phase_epochs']:.1f} before each step, {p['final_phase_epochs']:.1f} after the last"
              if p["steps"] else "no step")
    click.echo(f"lineage: {p['lineage_epochs']:.1f} epochs ({phases}); candidates that "
               f"lose: ~{p['lost_seconds']:.0f}s; predicted final network: {p['predicted_final_params']:,} params, "
               f"{p['predicted_final_macs']:,} MACs (re-planned at every step from what was measured)")
    limits = [f"--{name.replace('_', '-')} {getattr(cfg, name):,}" for name in ("max_params", "max_macs")
              if getattr(cfg, name) is not None]
    if limits:
        click.echo(f"growth stops at {' and '.join(limits)}: no step is planned past a limit")
    if cfg.max_latency_ms is not None:
        click.echo(f"--max-latency-ms {cfg.max_latency_ms:g} is not in the plan: latency is measured child by child")
    click.echo(json.dumps(p))


@main.command()
@config_options(ParetoConfig, exclude=START_FIELDS)
@start_options
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/pareto-<time>).")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory (--generations "
              "may be raised).")
@click.option("--quiet", is_flag=True, help="Log lines instead of progress bars.")
@executor_options
@click.pass_context
@one_line_errors
def pareto(ctx, out, resume, quiet, **kw):
    """A front of networks trading validation error against cost (LEMONADE): children by exact
    morphisms and by shrinking moves with a short recovery, parents drawn where the front is
    sparse. Writes front.json, pareto.png and each front member as RUN/front/<id>/."""
    started = time.time()
    _take_start_module(kw, resume)
    executor = _executor(kw, kw.get("device"))
    try:
        results = _run("pareto", kw, out, resume, quiet, started, ctx, executor=executor)
    finally:
        executor.close()
    cost = results["cost"]
    click.echo(f"front after {results['generations']} generations ({results['evaluated']} networks evaluated), by "
               f"{cost}:")
    for m in results["front"]:
        latency = f", {m['latency_ms']:.3g} ms" if "latency_ms" in m else ""
        click.echo(f"  {Path(results['run_dir']) / m['path']}: val {m['val_acc']:.4f} test {m['test_acc']:.4f} "
                   f"({m['params']:,} params, {m['macs']:,} MACs{latency})")
    _print_results(results, str(Path(results["run_dir"]) / "front.json"))


# DartsConfig's fields whose choices and names the CLI gives (nash/darts keeps the registries)
DARTS_OPTIONS = {
    "method": {"choices": METHODS},
    "order": {"choices": (1, 2)},  # strategy_for: first or second order
    "smooth": {"choices": SMOOTHERS},
    "selector": {"choices": SELECTORS, "option": "--select"},
    "space": {"choices": SPACES},
}


@main.command()
@config_options(DartsConfig, overrides=DARTS_OPTIONS)
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/darts-<time>).")
@click.option("--resume", type=click.Path(), default=None, help="Continue the search in this run directory.")
@click.option("--quiet", is_flag=True)
@click.pass_context
@one_line_errors
def darts(ctx, out, resume, quiet, **kw):
    """Differentiable search (DARTS family) in a cell space; then train the derived cell."""
    started = time.time()
    results = _run("darts", kw, out, resume, quiet, started, ctx)
    click.echo(results["genotype"])
    _print_results(results, str(Path(results["run_dir"]) / "results.json"))


@main.command("train-genotype")
@click.argument("genotype")
@config_options(DartsConfig, only=("train_epochs", "budget", "train_channels", "train_layers", "train_batch_size",
                                   "auxiliary", "drop_path", "cutout", "seed", *DATA_FIELDS),
                overrides={"train_epochs": {"option": "--epochs"}, "train_channels": {"option": "--channels"},
                           "train_layers": {"option": "--layers"}, "train_batch_size": {"option": "--batch-size"}})
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/genotype-<time>).")
@click.option("--quiet", is_flag=True)
@one_line_errors
def train_genotype_cmd(genotype, out, quiet, **kw):
    """Train and evaluate a cell: a name (DARTS_V2) or the text "Genotype(normal=[...], ...)"."""
    from .darts import get_genotype
    from .progress import Reporter
    from .search import Budget, load_data
    from .search.contract import write_results
    from .search.darts import train_and_report

    started = time.time()
    geno = get_genotype(genotype)
    cfg = DartsConfig(**kw)
    data = load_data(cfg)
    run = RunDir.create(out or default_run_path("genotype"),
                        {"command": "train-genotype", "genotype": str(geno), "config": cfg.to_json()})
    run.start_clock(started)
    with Reporter(quiet) as rep:
        final, details = train_and_report(run, geno, data, cfg, rep, Budget.for_run(cfg.budget, started))
    write_results(run, "train-genotype", final, **details)
    click.echo(f"val {final['val_acc']:.4f} test {final['test_acc']:.4f} ({final['params']:,} params); {run.path}")


@main.command()
@click.option("--methods", default="nash,random,none,darts", show_default=True,
              help=f"Comma-separated searchers, of: {', '.join(SEARCHERS)}.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds per method (0, 1, ...).")
@config_options(SearchConfig, only=("budget", *DATA_FIELDS, "val_fraction"),
                overrides={"budget": {"required": True, "help": "Wall-clock budget of each run: 3m, 30m, 12h, ..."}})
@config_options(StartNetConfig, only=("widths",), overrides={"widths": {
    "default": None, "help": "Start net conv widths for nash, random and none (default "
                             f"{','.join(map(str, StartNetConfig.widths))})."}})
@start_options
@click.option("--out", type=click.Path(), default=None, help="Comparison folder (default runs/compare-<time>); "
              "run again with the same --out to resume.")
@click.option("--set", "sets", multiple=True, metavar="[METHOD.]FIELD=VALUE",
              help="A config field for every method that has it, or for one method (darts.channels=8); repeatable.")
@click.option("--quiet", is_flag=True)
@executor_options
@one_line_errors
def compare(methods, seeds, budget, data, data_dir, subset, device, val_fraction, widths, out, sets, quiet, **ex):
    """Every searcher under the same budget, data and split: a table, JSON and a plot.

    With --start or --start-module, nash and none start from the given network's weights and
    random from fresh weights of its architecture; the DARTS family searches its own cell space."""
    from .compare import ignoring_start, parse_sets, run_compare
    names = [m.strip() for m in methods.split(",") if m.strip()]
    common = dict(data=data, data_dir=data_dir, subset=subset, device=device, val_fraction=val_fraction,
                  budget=budget)
    overrides = parse_sets(sets)
    if widths:
        overrides.setdefault("*", {})["widths"] = list(widths)
    start = {k: ex.pop(k) for k in ("start", "start_module", "start_weights", "new_head")}
    _take_start_module(start)
    if start["start"] is not None:
        overrides.setdefault("*", {}).update(start=start["start"], new_head=start["new_head"])
        for m in ignoring_start(names):
            click.echo(f"nash: {m} searches its own cell space and does not use the start network", err=True)
    if seeds < 1:
        raise OptionError(f"--seeds must be at least 1, got {seeds}")
    executor = _executor(ex, device)  # ray: every run at once, each a Ray task with these resources
    try:
        table = run_compare(names, seeds, common, overrides, out or default_run_path("compare"), quiet=quiet,
                            executor=executor)
    finally:
        executor.close()
    click.echo(table)


# ---------------------------------------------------------------------------------- train

@main.command()
@click.argument("network", type=click.Path())
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--lr-start", type=float, default=0.05, show_default=True)
@click.option("--lr-end", type=float, default=0.0, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@data_options
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/train-<time>).")
@click.option("--quiet", is_flag=True)
@one_line_errors
def train(network, epochs, lr_start, lr_end, batch_size, seed, data, data_dir, subset, device, out, quiet):
    """Train a saved network (a folder from Network.save, e.g. RUN_DIR/best) with one SGDR cycle."""
    from morphisms import Network
    from .search.contract import pick_device
    from .progress import Reporter
    from .train import evaluate, sgdr_train

    net = Network.load(network)
    dev = pick_device(device)
    splits = _load_data(data, data_dir, subset, 0.1, seed, dev)
    if net.input_shape != (splits.in_channels, *splits.image_size) or net.num_classes != splits.num_classes:
        raise GraphError(f"{network}: network takes {net.input_shape} -> {net.num_classes} classes, but {data} is "
                         f"{(splits.in_channels, *splits.image_size)} -> {splits.num_classes}")
    config = {"command": "train", "network": str(network), "epochs": epochs, "lr_start": lr_start, "lr_end": lr_end,
              "batch_size": batch_size, "seed": seed, "data": data, "data_dir": data_dir, "subset": subset}
    run = RunDir.create(out or default_run_path("train"), config)
    with Reporter(quiet) as rep:
        bar = rep.task("train", epochs)
        res = sgdr_train(net, splits.train_x, splits.train_y, epochs, lr_start, lr_end, batch_size=batch_size,
                         aug=splits.augment, seed=seed,
                         on_epoch=lambda e, r: (rep.update(bar, completed=e, info=f"acc {r.train_acc:.3f}"),
                                                run.event("epoch", epoch=e, train_acc=r.train_acc,
                                                          train_loss=r.train_loss)))
    val_acc, _ = evaluate(net, splits.val_x, splits.val_y)
    test_acc, _ = evaluate(net, splits.test_x, splits.test_y)
    net.save(run.path / "best")
    final = {"val_acc": val_acc, "test_acc": test_acc, "params": net.num_params()}
    run.write_json("results.json", {"final": final, "seconds": res.seconds, "failed": res.failed})
    click.echo(f"val {val_acc:.4f} test {test_acc:.4f} ({final['params']:,} params); {run.path}")


# ---------------------------------------------------------------------------------- show

@main.command()
@click.argument("run_dir", type=click.Path())
@one_line_errors
def show(run_dir):
    """Summarise a run directory: configuration, steps, results."""
    from rich.console import Console
    from rich.table import Table

    run = RunDir.open(run_dir)
    console = Console()
    cfg = run.config
    console.print(f"[bold]{run.path}[/bold]  ({cfg.get('method') or cfg.get('command', '?')})")
    inner = cfg.get("config", cfg)
    if isinstance(inner, dict):
        console.print(", ".join(f"{k}={v}" for k, v in inner.items() if v is not None))
    steps = run.events("step")
    if steps:
        table = Table("step", "best val acc", "params", "kept parent", "morphisms of the winner")
        children = {(c["step"], c["child"]): c for c in run.events("child")}
        for s in steps:
            won = children.get((s["step"], s["best_child"]), {})
            moves = "; ".join(m["kind"] + "(" + ", ".join(f"{k}={v}" for k, v in m.items() if k != "kind") + ")"
                              for m in won.get("morphisms", []))
            table.add_row(str(s["step"]), f"{s['val_acc']:.4f}", f"{s['params']:,}", str(s["kept_parent"]), moves or "-")
        console.print(table)
    epochs = run.events("epoch")
    if epochs and not steps:
        last = epochs[-1]
        console.print(f"{len(epochs)} epochs; last: " + ", ".join(f"{k}={v}" for k, v in last.items()
                                                                  if k not in ("event", "time")))
    if (run.path / "results.json").exists():
        res = run.read_json("results.json")
        table = Table("network", "val acc", "test acc", "params")
        for key in ("start", "final"):
            if key in res:
                r = res[key]
                table.add_row(key, f"{r['val_acc']:.4f}", f"{r.get('test_acc', float('nan')):.4f}", f"{r['params']:,}")
        console.print(table)
        if "seconds" in res:
            console.print(f"total time: {res['seconds']:.0f}s")
    else:
        console.print("no results.json yet (unfinished run: resume it with --resume)")


# ---------------------------------------------------------------------------------- export

@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["pt2", "onnx", "torchscript", "python"]), default="pt2",
              show_default=True, help="pt2: torch.export (torch.export.load); onnx; torchscript (deprecated by "
              "torch); python: a plain nn.Module source file that loads the network's weights.pt, no nash needed.")
@click.option("--out", type=click.Path(), default=None,
              help="Output file (default RUN_DIR/model.pt2, model.onnx, model.ts or model.py).")
@click.option("--max-params", type=Parsed(parse_count, "N"), default=None, metavar="N",
              help="A pareto run: the front member with the best validation accuracy that has at most N parameters "
                   "(200k, 1.5M). Another run: its network, if it is within N.")
@click.option("--max-macs", type=Parsed(parse_count, "N"), default=None, metavar="N",
              help="As --max-params, for multiply-accumulates per image (20M, 1.5G).")
@one_line_errors
def export(run_dir, fmt, out, max_params, max_macs):
    """Export a run's best network (or a saved network folder) as torch.export .pt2, ONNX or TorchScript;
    from a pareto run's front, the best one within --max-params/--max-macs."""
    from morphisms import Network
    from .export import FORMATS, export as do_export
    from .search.pareto import FRONT_JSON, front_member
    from .units import format_count

    src = Path(run_dir)
    limited = max_params is not None or max_macs is not None
    if limited and (src / FRONT_JSON).is_file():
        member = front_member(src, max_params, max_macs)  # one line naming the smallest if none fits
        net_dir = Path(member["path"])
        click.echo(f"front member {member['id']}: val {member['val_acc']:.4f} test {member['test_acc']:.4f} "
                   f"({member['params']:,} params, {member['macs']:,} MACs)")
        net = Network.load(net_dir)
    else:
        net_dir = src / "best" if (src / "best").is_dir() else src
        net = Network.load(net_dir)
        counts = ((net.num_params(), "parameters", "--max-params", max_params),
                  (net.macs(), "MACs", "--max-macs", max_macs))
        over = [f"{n:,} {what}, over {flag} {format_count(limit)}" for n, what, flag, limit in counts
                if limit is not None and n > limit]
        if over:
            raise OptionError(f"{net_dir} has {' and '.join(over)} (only a pareto run has a front to choose from)")
    target = Path(out) if out else src / FORMATS[fmt]
    do_export(net, target, fmt)
    click.echo(f"wrote {target}")
    if fmt == "python":
        click.echo(f"load it: from {target.stem} import Net; model = Net(); "
                   f"model.load_state_dict(torch.load('{net_dir / 'weights.pt'}'))")


# ---------------------------------------------------------------------------------- demo

@main.command()
@click.option("--morphisms", "n", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@one_line_errors
def demo(n, seed):
    """Apply random morphisms to a start net and show that the function is unchanged."""
    import torch
    from morphisms import random_morphisms, start_net

    torch.manual_seed(seed)
    net = start_net(3, 10, widths=(16, 32, 64), input_size=32).eval()
    x = torch.randn(8, 3, 32, 32)
    child, applied = random_morphisms(net, n, rng=seed)
    for m in applied:
        click.echo(f"  {m}")
    diff = (child.eval()(x) - net(x)).abs().max().item()
    click.echo(f"parent {net.num_params():,} params, {len(net.graph)} nodes; child {child.num_params():,} params, "
               f"{len(child.graph)} nodes; largest output difference {diff:.2e}")
