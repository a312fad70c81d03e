"""The plots and drawings a finished run leaves in its directory."""
from __future__ import annotations

from morphisms import Network

from .draw import draw_network, figure, save_figure, to_dot
from .rundir import RunDir, atomic_write_bytes


def plot_climb(run: RunDir, path) -> None:
    children = [e for e in run.events("child") if e.get("val_acc") is not None]
    start = run.events("start")
    steps = run.events("step")
    fig = figure((11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    if start:
        ax1.scatter([0], [start[0]["val_acc"]], c="k", marker="s", label="start net")
        ax2.scatter([0], [start[0]["params"]], c="k", marker="s")
    ax1.scatter([c["step"] for c in children], [c["val_acc"] for c in children], s=12, alpha=0.5, label="candidates")
    ax2.scatter([c["step"] for c in children], [c["params"] for c in children], s=12, alpha=0.5)
    xs = [0] + [s["step"] for s in steps]
    ax1.plot(xs, ([start[0]["val_acc"]] if start else [None]) + [s["val_acc"] for s in steps], "r-o", label="best")
    ax2.plot(xs, ([start[0]["params"]] if start else [None]) + [s["params"] for s in steps], "r-o")
    ax1.set(xlabel="step", ylabel="validation accuracy", title="validation accuracy over steps")
    ax2.set(xlabel="step", ylabel="parameters", title="parameters over steps", yscale="log")
    ax1.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def write_climb_report(run: RunDir, best: Network, rep=None) -> None:
    try:
        plot_climb(run, run.path / "climb.png")
        draw_network(best, run.path / "architecture.png")
    except ImportError as e:  # matplotlib is a dependency, but a broken install should not lose the run
        if rep:
            rep.log(f"plots skipped: {e}")
    atomic_write_bytes(run.path / "architecture.dot", to_dot(best).encode())
