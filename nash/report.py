"""The plots and drawings a finished run leaves in its directory."""
from __future__ import annotations

from morphisms import Network

from .draw import draw_network, figure, save_figure, to_dot
from .rundir import RunDir, atomic_write_bytes


def plot_climb(run: RunDir, path) -> None:
    save_figure(climb_figure(run), path)


def climb_figure(run: RunDir):
    """Validation accuracy and parameters over steps: the lineage's best as a line, every
    candidate's every rung as a point just left of its step (rungs spread left to right, so none
    hides behind the line or the winner's point); integer step ticks; accuracy within [0, 1]."""
    from matplotlib.ticker import MaxNLocator
    children = [e for e in run.events("child") if e.get("val_acc") is not None]
    start = run.events("start")
    steps = run.events("step")
    fig = figure((11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    xs = [0] + [s["step"] for s in steps]
    ax1.plot(xs, ([start[0]["val_acc"]] if start else [None]) + [s["val_acc"] for s in steps], "r-o", zorder=1,
             label="best")
    ax2.plot(xs, ([start[0]["params"]] if start else [None]) + [s["params"] for s in steps], "r-o", zorder=1)
    if start:
        ax1.scatter([0], [start[0]["val_acc"]], c="k", marker="s", zorder=3, label="start net")
        ax2.scatter([0], [start[0]["params"]], c="k", marker="s", zorder=3)
    rungs = max((c.get("rung") or 0 for c in children), default=0) + 1
    # left of the step's own point (the winner's, on the line), rung 1 farthest, the last rung nearest
    offset = {r: -0.3 + 0.22 * r / max(1, rungs - 1) for r in range(rungs)}
    cmap = fig.colormaps["viridis"] if hasattr(fig, "colormaps") else None
    for r in range(rungs):
        mine = [c for c in children if (c.get("rung") or 0) == r]
        if not mine:
            continue
        color = None if cmap is None else cmap(r / max(1, rungs - 1))
        label = "candidates" if rungs == 1 else f"candidates, rung {r + 1}"
        ax1.scatter([c["step"] + offset[r] for c in mine], [c["val_acc"] for c in mine], s=14, alpha=0.8, zorder=2,
                    color=color, edgecolors="none", label=label)
        ax2.scatter([c["step"] + offset[r] for c in mine], [c["params"] for c in mine], s=14, alpha=0.8, zorder=2,
                    color=color, edgecolors="none")
    accs = [c["val_acc"] for c in children] + [s["val_acc"] for s in steps] + [e["val_acc"] for e in start]
    if accs:
        lo, hi = min(accs), max(accs)
        pad = max(0.01, 0.05 * (hi - lo))
        ax1.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.5, max(xs) + 0.5)
    ax1.set(xlabel="step", ylabel="validation accuracy", title="validation accuracy over steps")
    ax2.set(xlabel="step", ylabel="parameters", title="parameters over steps")
    if any(e.get("params") for e in children + steps + start):  # (random search draws no steps)
        ax2.set_yscale("log")
    ax1.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def front_figure(points, fronts, cost_label: str):
    """Validation error against cost: every network evaluated as a grey point, the front after
    each generation as a staircase, earlier fronts lighter, the last one dark with its members
    marked. `points`: [(cost, error)]; `fronts`: [[(cost, error)] sorted by cost] in order."""
    fig = figure((7, 4.5))
    ax = fig.subplots()
    if points:
        ax.scatter([c for c, _ in points], [e for _, e in points], s=10, color="0.6", alpha=0.6, edgecolors="none",
                   zorder=1, label="evaluated")
    import matplotlib
    cmap = matplotlib.colormaps["Blues"]
    for g, front in enumerate(fronts):
        if not front:
            continue
        last = g == len(fronts) - 1
        shade = 0.25 + 0.75 * g / max(1, len(fronts) - 1)  # light (early) to dark (late)
        color = "C3" if last else cmap(shade)
        xs, ys = [c for c, _ in front], [e for _, e in front]
        ax.step(xs, ys, where="post", color=color, lw=2.0 if last else 1.0, zorder=2 + g,
                label="front" if last else (f"fronts of generations 0-{len(fronts) - 2}" if g == 0 else None))
        if last:
            ax.scatter(xs, ys, color=color, s=28, zorder=3 + g)
    ax.set_xscale("log")
    ax.set(xlabel=cost_label, ylabel="validation error", title="the front over generations (earlier: lighter)")
    if points:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def write_run_report(run: RunDir, best: Network, rep=None) -> None:
    """The plots and drawings of a finished run: climb.png (steps, or candidates), the best
    network's drawing and its DOT text. A drawing never loses a run."""
    try:
        plot_climb(run, run.path / "climb.png")
        draw_network(best, run.path / "architecture.png")
    except ImportError as e:  # matplotlib is a dependency, but a broken install should not lose the run
        if rep:
            rep.log(f"plots skipped: {e}")
    atomic_write_bytes(run.path / "architecture.dot", to_dot(best).encode())
