"""The search's figures, drawn from its `darts_epoch` events.

alphas.png: the op weights of every edge over the epochs, one panel per edge, one block of
panels per cell type. diagnostics.png: skip connections in the derived normal cell, the
dominant Hessian eigenvalue (when tracked) and the smoothing epsilon (when smoothing).

Drawn with `nash.draw`'s figure helpers (own Agg canvas, no pyplot; atomic writes); both
return False (with a warning) when matplotlib is missing or there is nothing to plot.
"""
from __future__ import annotations

import warnings

import torch

from nash.draw import figure, save_figure


def _figure(size):
    try:
        return figure(size)
    except ImportError:
        warnings.warn("matplotlib is not installed: no search plots", stacklevel=3)
        return None


def plot_alphas(events: list[dict], path, space) -> bool:
    """Op weights of every edge over the epochs (rows: intermediate nodes, columns: their
    inputs), cell types side by side (DARTS: normal left, reduction right)."""
    if not events:
        return False
    keys = [f"alphas_{cell}" for cell in space.cell_types if f"alphas_{cell}" in events[0]]
    if not keys:
        return False
    cols = space.num_inputs + space.steps - 1
    fig = _figure((2.0 * len(keys) * cols, 1.6 * space.steps + 0.8))
    if fig is None:
        return False
    epochs = [e["epoch"] for e in events]
    axes = fig.subplots(space.steps, len(keys) * cols, squeeze=False, sharex=True, sharey=True)
    for block, key in enumerate(keys):
        series = torch.tensor([e[key] for e in events])  # epochs x edges x ops
        for row in range(space.steps):
            for col in range(cols):
                ax = axes[row][block * cols + col]
                edge = [k for k, (src, dst) in enumerate(space.edges) if dst == space.num_inputs + row and src == col]
                if not edge:
                    ax.axis("off")
                    continue
                for k, op in enumerate(space.ops):
                    ax.plot(epochs, series[:, edge[0], k].tolist(), label=op, linewidth=1)
                ax.set_title(f"{key.split('_', 1)[1]}: {col}->{space.num_inputs + row}", fontsize=7)
                ax.tick_params(labelsize=6)
    fig.suptitle("op weights of every edge (source -> node) over the epochs", fontsize=9)
    handles, labels = next(ax for row in axes for ax in row if ax.lines).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(space.ops), fontsize=7)
    # fixed margins: tight_layout over dozens of panels costs seconds
    fig.subplots_adjust(left=0.03, right=0.99, top=0.9, bottom=0.14, wspace=0.15, hspace=0.45)
    save_figure(fig, path, dpi=90)
    return True


def plot_diagnostics(events: list[dict], path) -> bool:
    """Skip connections in the derived normal cell, and where recorded the dominant Hessian
    eigenvalue and the smoothing epsilon, over the epochs."""
    if not events:
        return False
    panels = [("skips", "skip connections in the normal cell")]
    if any(e.get("hessian_eig") is not None for e in events):
        panels.append(("hessian_eig", "dominant eigenvalue of the alpha Hessian"))
    if any(e.get("epsilon") is not None for e in events):
        panels.append(("epsilon", "smoothing epsilon"))
    fig = _figure((4.0 * len(panels), 3.0))
    if fig is None:
        return False
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title) in zip(axes, panels):
        points = [(e["epoch"], e[key]) for e in events if e.get(key) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, linewidth=1)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.18, wspace=0.3)
    save_figure(fig, path, dpi=90)
    return True
