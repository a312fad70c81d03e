"""The network a search starts from: the NASH start net, a saved Network, or the user's own
PyTorch model (imported through torch.fx by morphisms.from_module).

A config's `start` may name a saved network (a path) or hold a Network or an nn.Module (the
Python API). Before a run is created, `resolve_start` turns whatever it holds into a Network
that fits the data (a new linear head on request, when the classes differ); the run directory
then keeps a copy in RUN/start and its config.json points there, so a resume, a Ray worker and
`nash show` never need the user's file or object again.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

import torch
from torch import nn

from morphisms import Network, from_module, new_head

from ..errors import OptionError

SNAPSHOT = "start"  # the copy of the start network inside a run directory


def load_module(spec: str, weights=None) -> nn.Module:
    """The nn.Module that FILE.py:FACTORY returns (FACTORY called with no arguments), with the
    state dict in `weights` loaded when given. Any failure is one OptionError line."""
    path, sep, factory = str(spec).rpartition(":")
    if not sep or not path or not factory.isidentifier():
        raise OptionError(f"--start-module {spec!r}: give FILE.py:FACTORY (a callable in the file that returns "
                          f"the model)")
    if not Path(path).is_file():
        raise OptionError(f"--start-module {spec!r}: {path} not found")
    name = f"nash_user_model_{abs(hash(os.path.abspath(path)))}"
    try:
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module  # dataclasses and pickling inside the user's file look it up
        loader_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: whatever it raises, one line
        raise OptionError(f"--start-module {spec!r}: importing {path} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise OptionError(f"--start-module {spec!r}: {path} has no callable {factory!r}")
    try:
        model = fn()
    except Exception as e:
        raise OptionError(f"--start-module {spec!r}: {factory}() failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise OptionError(f"--start-module {spec!r}: {factory}() returned a {type(model).__name__}, not a "
                          f"torch.nn.Module")
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            model.load_state_dict(state)
        except FileNotFoundError:
            raise OptionError(f"--start-weights {weights}: not found") from None
        except Exception as e:
            raise OptionError(f"--start-weights {weights}: does not load into {factory}(): "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return model


def _import(model: nn.Module, data) -> Network:
    """The user's module as a Network, traced on a batch shaped like the data (CPU, fp32)."""
    model = model.cpu().float()
    g = torch.Generator().manual_seed(0)
    example = torch.randn(2, data.in_channels, *data.image_size, generator=g)
    return from_module(model, example)


def start_network(start, data, new_head_seed: int | None = None) -> Network:
    """The Network that `start` (a path, a Network or an nn.Module) names, fitting the data:
    input shape checked; a classifier for another number of classes replaced when
    `new_head_seed` is given (a fresh head drawn from it), else refused in one line."""
    if isinstance(start, Network):
        net = start
    elif isinstance(start, nn.Module):
        net = _import(start, data)
    else:
        net = Network.load(start)
    want = (data.in_channels, *data.image_size)
    if tuple(net.input_shape) != want:
        raise OptionError(f"start network {_name(start)}: takes inputs {tuple(net.input_shape)}, the data's are {want}")
    if net.num_classes != data.num_classes:
        if new_head_seed is None:
            raise OptionError(f"start network {_name(start)}: has {net.num_classes} classes, the data "
                              f"{data.num_classes}; pass --new-head (Python: new_head=True) for a new classifier")
        net = new_head(net, data.num_classes, seed=new_head_seed)
    return net


def _name(start) -> str:
    return type(start).__name__ if isinstance(start, nn.Module) else str(start)


def resolve_start(cfg, data):
    """(cfg holding the start Network itself, that Network) for a config with a `start`, the
    import, head and checks done once; (cfg, None) for a config without one."""
    start = getattr(cfg, "start", None)
    if start is None:
        return cfg, None
    net = start_network(start, data, cfg.seed if cfg.new_head else None)
    return dataclasses.replace(cfg, start=net, new_head=False), net


def with_snapshot(cfg, run_path) -> object:
    """`cfg` with its start pointing at the snapshot inside the run directory at `run_path`."""
    return dataclasses.replace(cfg, start=str((Path(run_path) / SNAPSHOT).resolve()), new_head=False)
