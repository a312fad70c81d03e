"""The `nash` command: climb, darts, train, train-genotype, show, export, demo.

Bad input ends with one line on stderr and exit status 2, never a traceback; nothing a run
directory already holds is overwritten.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import click

from morphisms import GraphError, MorphismsError

from .budget import parse_budget
from .data import DATASETS
from .errors import NashError, OptionError
from .rundir import RunDir, default_run_path



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


def data_options(fn):
    """--data, --data-dir, --subset and --device, alike for every command that trains."""
    for option in reversed([
        click.option("--data", default="digits", show_default=True, help=f"Data set: {', '.join(DATASETS)}."),
        click.option("--data-dir", type=click.Path(), default=None, help="Folder holding the data set's files."),
        click.option("--subset", type=int, default=None, help="Use this many training images (quick runs)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
    ]):
        fn = option(fn)
    return fn


def _load_data(name, data_dir, subset, val_fraction, seed, device):
    from .data import load_dataset
    return load_dataset(name, data_dir=data_dir, val_fraction=val_fraction, subset=subset, seed=seed,
                        device=device)


# ---------------------------------------------------------------------------------- climb

@main.command()
@click.option("--budget", default=None, help="Wall-clock budget for the whole run: 12h, 90m, 45s, 1h30m.")
@click.option("--steps", type=int, default=None, help="Hill-climbing steps (default 5 without --budget; with a "
              "budget, as many as fit).")
@click.option("--n-neigh", type=int, default=8, show_default=True, help="Candidates per step (the parent is one).")
@click.option("--n-nm", type=int, default=5, show_default=True, help="Random morphisms per child.")
@click.option("--epoch-neigh", type=int, default=17, show_default=True, help="SGDR epochs per candidate.")
@click.option("--epoch-final", type=int, default=20, show_default=True, help="SGDR epochs for the winner.")
@click.option("--lr-start", type=float, default=0.05, show_default=True)
@click.option("--lr-end", type=float, default=0.0, show_default=True)
@click.option("--pretrain-epochs", type=int, default=20, show_default=True, help="SGDR epochs for the start net.")
@click.option("--seed", type=int, default=0, show_default=True)
@data_options
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--widths", default="64,128,256", show_default=True, help="Start net conv widths.")
@click.option("--cutout", type=int, default=0, show_default=True, help="Cutout square size (0: off).")
@click.option("--mixup", type=float, default=0.0, show_default=True, help="Mixup alpha (0: off).")
@click.option("--start", type=click.Path(), default=None, help="Start from a saved network (e.g. RUN_DIR/best).")
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/climb-<time>).")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory.")
@click.option("--quiet", is_flag=True, help="Log lines instead of progress bars.")
@one_line_errors
def climb(budget, steps, n_neigh, n_nm, epoch_neigh, epoch_final, lr_start, lr_end, pretrain_epochs, seed, data,
          data_dir, subset, val_fraction, batch_size, widths, cutout, mixup, start, device, out, resume, quiet):
    """Hill-climb with network morphisms (NASH), then train the winner."""
    started = time.time()
    from .climb import ClimbConfig, HillClimber, pick_device
    from .progress import Reporter

    if resume:
        run = RunDir.open(resume)
        cfg = ClimbConfig.from_json(run.config["climb"])
    else:
        try:
            width_list = tuple(int(w) for w in widths.split(","))
        except ValueError:
            raise OptionError(f"--widths {widths!r} is not a comma-separated list of integers") from None
        for name, v in (("--n-neigh", n_neigh), ("--n-nm", n_nm), ("--batch-size", batch_size)):
            if v < 1:
                raise OptionError(f"{name} must be at least 1, got {v}")
        cfg = ClimbConfig(data=data, data_dir=data_dir, subset=subset, val_fraction=val_fraction, n_neigh=n_neigh,
                          n_nm=n_nm, epoch_neigh=epoch_neigh, epoch_final=epoch_final, lr_start=lr_start,
                          lr_end=lr_end, pretrain_epochs=pretrain_epochs, steps=steps,
                          budget=parse_budget(budget) if budget else None, seed=seed, batch_size=batch_size,
                          widths=width_list, cutout=cutout, mixup=mixup, start=start, device=device)
    dev = pick_device(cfg.device)
    splits = _load_data(cfg.data, cfg.data_dir, cfg.subset, cfg.val_fraction, cfg.seed, dev)
    if not resume:
        run = RunDir.create(out or default_run_path("climb"), {"command": "climb", "climb": cfg.to_json()})
    with Reporter(quiet) as rep:
        rep.log(f"run directory: {run.path}")
        results = HillClimber(cfg, run, splits, rep).run_climb(started)
    click.echo(f"start: val {results['start']['val_acc']:.4f} test {results['start']['test_acc']:.4f} "
               f"({results['start']['params']:,} params)")
    click.echo(f"final: val {results['final']['val_acc']:.4f} test {results['final']['test_acc']:.4f} "
               f"({results['final']['params']:,} params) after {results['steps']} steps, {results['seconds']:.0f}s")
    click.echo(f"results: {run.path / 'results.json'}")


# ---------------------------------------------------------------------------------- darts

def eval_size(cfg: dict, splits) -> tuple[int, int]:
    """(channels, cells) of the derived network: as given, or by default the DARTS evaluation
    size (36, 20) for inputs of 32x32 and more, the search size (16, 8) below that, where a
    20-cell network has too few pixels and too few images to learn from in a CPU budget."""
    big = min(splits.image_size) >= 32
    return (cfg["train_channels"] or (36 if big else 16), cfg["train_layers"] or (20 if big else 8))


def _train_and_report(run, genotype, splits, cfg, rep, deadline):
    """Lower, train and evaluate a genotype; write best/, results.json and drawings into `run`."""
    from .darts import train_genotype
    from .draw import draw_genotype, draw_network, to_dot
    from .rundir import atomic_write_bytes

    channels, layers = eval_size(cfg, splits)
    epochs = cfg["train_epochs"]
    kw = dict(channels=channels, layers=layers, batch_size=cfg["train_batch_size"], auxiliary=cfg["auxiliary"],
              seed=cfg["seed"], drop_path=cfg["drop_path"], cutout=cfg["cutout"])
    if deadline is not None:
        # time one epoch of exactly the training to come, then fit the cosine cycle to what is left
        t = time.time()
        _, probe = train_genotype(genotype, splits, 1, **kw)
        per_epoch = probe["seconds"]
        left = deadline - time.time() - (time.time() - t - per_epoch) - 5.0  # evaluation and drawing
        fit = max(1, min(epochs, int(left / (per_epoch * 1.1))))
        if fit < epochs:
            rep.log(f"budget: training the derived network for {fit} of {epochs} epochs")
            epochs = fit
    bar = rep.task("train derived net", epochs)

    def on_epoch(e, r):
        rep.update(bar, completed=e, info=f"acc {r.train_acc:.3f}")
        run.event("train_epoch", epoch=e, train_acc=r.train_acc, train_loss=r.train_loss)

    net, res = train_genotype(genotype, splits, epochs, on_epoch=on_epoch, deadline=deadline, **kw)
    rep.remove(bar)
    if res["epochs"] < epochs:
        rep.log(f"budget: training stopped after {res['epochs']} of {epochs} epochs")
    net.save(run.path / "best")
    final = {"val_acc": res.get("val_acc"), "test_acc": res["test_acc"], "params": res["params_without_aux"]}
    results = {"final": final, "genotype": res["genotype"], "epochs": res["epochs"], "channels": channels,
               "layers": layers, "params_with_aux": res["params"], "train_seconds": res["seconds"],
               "failed": res["failed"]}
    run.event("final", **final, epochs=res["epochs"], seconds=res["seconds"])
    try:
        draw_genotype(genotype, run.path / "cells.png")
        if len(net.graph) <= 400:  # past that a drawing of every node is slow and unreadable
            draw_network(net, run.path / "architecture.png")
    except ImportError:
        pass
    atomic_write_bytes(run.path / "architecture.dot", to_dot(net).encode())
    return results


@main.command()
@click.option("--method", default="darts", show_default=True, help="Search method (darts; more come with variants).")
@click.option("--order", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="DARTS first or second order architecture gradient.")
@click.option("--epochs", type=int, default=50, show_default=True, help="Search epochs (reference: 50).")
@click.option("--budget", default=None, help="Wall-clock budget for search + training the result: 20m, 12h, ...")
@click.option("--search-share", type=float, default=0.5, show_default=True,
              help="With --budget: the share of it given to the search; the rest trains the derived net.")
@click.option("--channels", type=int, default=16, show_default=True, help="Supernet initial channels.")
@click.option("--layers", type=int, default=8, show_default=True, help="Supernet cells.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--train-epochs", type=int, default=600, show_default=True, help="Epochs to train the derived net.")
@click.option("--train-channels", type=int, default=None, help="Derived net's channels (default 36 for 32x32 "
              "inputs, else 16).")
@click.option("--train-layers", type=int, default=None, help="Derived net's cells (default 20 for 32x32 inputs, "
              "else 8).")
@click.option("--train-batch-size", type=int, default=96, show_default=True)
@click.option("--auxiliary/--no-auxiliary", default=None, help="Auxiliary head (default: on for 32x32 inputs).")
@click.option("--drop-path", type=float, default=0.2, show_default=True)
@click.option("--cutout", type=int, default=None, help="Cutout size for training the derived net (default 16 "
              "for 32x32 inputs, else off).")
@click.option("--seed", type=int, default=0, show_default=True)
@data_options
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/darts-<time>).")
@click.option("--resume", type=click.Path(), default=None, help="Continue the search in this run directory.")
@click.option("--quiet", is_flag=True)
@one_line_errors
def darts(method, order, epochs, budget, search_share, channels, layers, batch_size, train_epochs, train_channels,
          train_layers, train_batch_size, auxiliary, drop_path, cutout, seed, data, data_dir, subset, device, out,
          resume, quiet):
    """Differentiable search (DARTS family) in the DARTS cell space; then train the derived cell."""
    from .climb import pick_device
    from .darts import Genotype, run_search, search_config
    from .progress import Reporter

    started = time.time()
    if resume:
        run = RunDir.open(resume)
        cfg = run.config["darts"]
    else:
        budget_s = parse_budget(budget) if budget else None
        if not 0 < search_share < 1:
            raise OptionError(f"--search-share must be between 0 and 1, got {search_share}")
        cfg = dict(method=method, order=int(order), epochs=epochs, channels=channels, layers=layers,
                   batch_size=batch_size, seed=seed, budget=budget_s, search_share=search_share,
                   budget_seconds=budget_s * search_share if budget_s else None,
                   train_epochs=train_epochs, train_channels=train_channels, train_layers=train_layers,
                   train_batch_size=train_batch_size, auxiliary=auxiliary, drop_path=drop_path, cutout=cutout,
                   data=data, data_dir=data_dir, subset=subset, device=device)
    search_config(cfg)  # bad values fail here, before anything is written
    splits = _load_data(cfg["data"], cfg["data_dir"], cfg["subset"], 0.1, cfg["seed"], pick_device(cfg["device"]))
    if not resume:
        run = RunDir.create(out or default_run_path("darts"), {"command": "darts", "darts": cfg})
    deadline = started + cfg["budget"] - min(0.02 * cfg["budget"], 10.0) if cfg["budget"] else None
    if resume and cfg["budget"]:
        spent = run.events("darts_epoch")
        deadline = started + cfg["budget"] - sum(e["seconds"] for e in spent)
    with Reporter(quiet) as rep:
        rep.log(f"run directory: {run.path}")
        bar = rep.task(f"search ({cfg['method']}, order {cfg['order']})", cfg["epochs"])

        def progress(ev):
            rep.update(bar, completed=ev["epoch"], info=f"val {ev['val_acc']:.3f}")
            rep.log(f"epoch {ev['epoch']}: supernet val acc {ev['val_acc']:.4f}; {ev['genotype']}")

        summary = run_search(cfg, run, splits, progress=progress)
        rep.remove(bar)
        genotype = Genotype.parse(summary["genotype"])
        rep.log(f"genotype after {summary['epochs_done']} epochs: {genotype}")
        results = _train_and_report(run, genotype, splits, cfg, rep, deadline)
    results["search"] = {k: summary[k] for k in ("epochs_done", "seconds", "stopped", "val_acc")}
    results["seconds"] = time.time() - started
    run.write_json("results.json", results)
    f = results["final"]
    click.echo(f"{genotype}")
    click.echo(f"derived net: val {f['val_acc']:.4f} test {f['test_acc']:.4f} ({f['params']:,} params); "
               f"{run.path / 'results.json'}")


@main.command("train-genotype")
@click.argument("genotype")
@click.option("--epochs", type=int, default=600, show_default=True)
@click.option("--budget", default=None, help="Wall-clock budget: fit the epochs into it.")
@click.option("--channels", type=int, default=None, help="Default 36 for 32x32 inputs, else 16.")
@click.option("--layers", type=int, default=None, help="Default 20 for 32x32 inputs, else 8.")
@click.option("--batch-size", type=int, default=96, show_default=True)
@click.option("--auxiliary/--no-auxiliary", default=None, help="Auxiliary head (default: on for 32x32 inputs).")
@click.option("--drop-path", type=float, default=0.2, show_default=True)
@click.option("--cutout", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@data_options
@click.option("--out", type=click.Path(), default=None, help="Run directory (default runs/genotype-<time>).")
@click.option("--quiet", is_flag=True)
@one_line_errors
def train_genotype_cmd(genotype, epochs, budget, channels, layers, batch_size, auxiliary, drop_path, cutout, seed,
                       data, data_dir, subset, device, out, quiet):
    """Train and evaluate a cell: a name (DARTS_V2) or the text "Genotype(normal=[...], ...)"."""
    from .climb import pick_device
    from .darts import get_genotype
    from .progress import Reporter

    started = time.time()
    geno = get_genotype(genotype)
    budget_s = parse_budget(budget) if budget else None
    splits = _load_data(data, data_dir, subset, 0.1, seed, pick_device(device))
    cfg = dict(genotype=str(geno), train_epochs=epochs, train_channels=channels, train_layers=layers,
               train_batch_size=batch_size, auxiliary=auxiliary, drop_path=drop_path, cutout=cutout, seed=seed,
               data=data, data_dir=data_dir, subset=subset, budget=budget_s)
    run = RunDir.create(out or default_run_path("genotype"), {"command": "train-genotype", "train-genotype": cfg})
    deadline = started + budget_s - min(0.02 * budget_s, 10.0) if budget_s else None
    with Reporter(quiet) as rep:
        results = _train_and_report(run, geno, splits, cfg, rep, deadline)
    results["seconds"] = time.time() - started
    run.write_json("results.json", results)
    f = results["final"]
    click.echo(f"val {f['val_acc']:.4f} test {f['test_acc']:.4f} ({f['params']:,} params); {run.path}")


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
    from .climb import pick_device
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
    console.print(f"[bold]{run.path}[/bold]  ({cfg.get('command', '?')})")
    inner = cfg.get(cfg.get("command"), cfg)
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
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="torchscript", show_default=True)
@click.option("--out", type=click.Path(), default=None, help="Output file (default RUN_DIR/model.onnx or model.pt).")
@one_line_errors
def export(run_dir, fmt, out):
    """Export a run's best network (or a saved network folder) as ONNX or TorchScript."""
    from morphisms import Network
    from .export import export as do_export

    src = Path(run_dir)
    net_dir = src / "best" if (src / "best").is_dir() else src
    net = Network.load(net_dir)
    target = Path(out) if out else src / ("model.onnx" if fmt == "onnx" else "model.pt")
    do_export(net, target, fmt)
    click.echo(f"wrote {target}")


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
