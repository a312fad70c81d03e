"""Export a Network to files that load without nash: TorchScript and ONNX."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from morphisms import Network
from .errors import NashError


class ExportError(NashError, ValueError):
    pass


def _atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export(net: Network, path, fmt: str) -> Path:
    """Write `net` (eval mode, CPU, float32) as TorchScript (.pt) or ONNX (.onnx) at `path`."""
    net = net.cpu().float().eval()
    example = torch.zeros(1, *net.input_shape)
    path = Path(path)
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, example)
        return _atomic(path, lambda f: torch.jit.save(traced, f))
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
        except ImportError:
            raise ExportError("ONNX export needs the onnx package: pip install 'nash[onnx]'") from None

        def write(f):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # the TorchScript-based exporter: needs only `onnx`, and our graphs are static
                torch.onnx.export(net, (example,), f, input_names=["input"], output_names=["logits"],
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
        return _atomic(path, write)
    raise ExportError(f"unknown export format {fmt!r} (known: onnx, torchscript)")
