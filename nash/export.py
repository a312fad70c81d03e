"""Export a Network to one file that loads without nash.

- `pt2` (the default): `torch.export`'s ExportedProgram, written by `torch.export.save`; load
  it with `torch.export.load(path).module()`. torch's supported path for a graph of ops.
- `onnx`: torch's current (dynamo) exporter, which builds on `torch.export` and needs the
  `onnx` and `onnxscript` packages (`pip install 'nash[onnx]'`); it runs offline.
- `torchscript`: `torch.jit.trace`. torch deprecates TorchScript; it stays under its name for
  users whose runtime still loads only TorchScript, as long as torch can write it.

Every format keeps the batch dimension free and the rest fixed to the network's input shape.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from morphisms import Network
from .errors import NashError

# format name -> the file name `nash export` writes in the run directory
FORMATS = {"pt2": "model.pt2", "onnx": "model.onnx", "torchscript": "model.ts", "python": "model.py"}


class ExportError(NashError, ValueError):
    pass


def _atomic(path: Path, write) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, then rename it over `path`: a reader
    never sees half a file, and a failed export leaves what was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # same suffix: exporters may look at it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _free_batch() -> dict:
    """dynamic_shapes for Network.forward(x): torch.export fixes every size of the example
    unless told otherwise; the batch size is the one a user changes."""
    return {"x": {0: torch.export.Dim("batch", min=1)}}


def export(net: Network, path, fmt: str) -> Path:
    """Write `net` (eval mode, CPU, float32) at `path` as `fmt`, one of FORMATS."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    net = copy.deepcopy(net).cpu().float().eval()  # the caller's network keeps its device and mode
    example = torch.zeros(2, *net.input_shape)
    path = Path(path)
    if fmt == "pt2":
        program = torch.export.export(net, (example,), dynamic_shapes=_free_batch())
        return _atomic(path, lambda f: torch.export.save(program, f))
    if fmt == "python":  # plain PyTorch source; its state dict is the network's (best/weights.pt loads into it)
        from morphisms import to_source
        source = to_source(net)
        return _atomic(path, lambda f: Path(f).write_text(source))
    if fmt == "torchscript":
        def write(f):
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's deprecation notices: the format's help says so
                torch.jit.save(torch.jit.trace(net, example), f)
        return _atomic(path, write)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (the dynamo exporter translates with it)
    except ImportError as e:
        raise ExportError(f"ONNX export needs the {e.name} package: pip install 'nash[onnx]'") from None

    def write(f):
        # dynamo=True, measured with torch 2.13, onnx 1.23, onnxscript 0.7: exports offline and
        # matches the network to ~3e-8. external_data=False keeps the weights inside the one
        # file (else a `.data` file named after the temp file would be left beside it).
        with warnings.catch_warnings(), _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), f, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=_free_batch(), dynamo=True,
                              external_data=False, verbose=False)
    return _atomic(path, write)


@contextlib.contextmanager
def _quiet(name: str):
    """Silence a logger while the exporter runs (it logs a line for each optional op set it
    skips, e.g. torchvision's), then give it back its level."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
