"""Exported files load and compute the network's function in a process where nash cannot load."""
import importlib.util
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from conftest import scramble
from morphisms import random_morphisms, start_net
from nash.cli import main
from nash.darts import lower
from nash.export import FORMATS, ExportError, export

# Run with -I (no cwd, no PYTHONPATH on sys.path). nash is pip-installed in editable mode, so -I
# alone cannot hide it: a finder refuses nash and morphisms outright, and the script checks that
# neither was loaded. torch.export.load needs no Python of ours, nor do TorchScript or ONNX.
LOADER = r"""
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("nash", "morphisms"):
            raise ImportError(f"{name} must not be needed to load an export")

sys.meta_path.insert(0, Refuse())
fmt, model, inputs, outputs = sys.argv[1:]
import numpy as np
import torch

x = torch.load(inputs, weights_only=True)
if fmt == "pt2":
    y = torch.export.load(model).module()(x)
elif fmt == "torchscript":
    y = torch.jit.load(model)(x)
elif fmt == "python":  # the written module, with the network's weights (a run's best/weights.pt)
    import importlib.util
    spec = importlib.util.spec_from_file_location("exported_model", model)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    m = module.Net()
    m.load_state_dict(torch.load(model[:-len("model.py")] + "weights.pt", weights_only=True))
    y = m.eval()(x)
else:
    import onnxruntime
    y = torch.from_numpy(onnxruntime.InferenceSession(model).run(None, {"input": x.numpy()})[0])
assert "nash" not in sys.modules and "morphisms" not in sys.modules
torch.save(y.detach(), outputs)
"""


def morphed_net():
    torch.manual_seed(0)
    net, _ = random_morphisms(start_net(1, 10, (4, 8), 8), 8, rng=1)
    return scramble(net).eval()  # non-trivial BN statistics, so that eval-mode BN is exported


def darts_net():
    torch.manual_seed(0)  # lower() builds from torch's global generator
    return scramble(lower("DARTS_V2", channels=8, layers=3, num_classes=10, in_channels=1, input_size=8,
                          drop_path=0.2)).eval()


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("make", [morphed_net, darts_net], ids=["morphed", "darts"])
def test_an_export_loads_without_nash_and_computes_the_same(tmp_path, fmt, make):
    net = make()
    path = export(net, tmp_path / FORMATS[fmt], fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FORMATS[fmt]]  # one file, no temp left
    if fmt == "onnx":
        import onnx
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        if importlib.util.find_spec("onnxruntime") is None:
            pytest.skip("onnxruntime is not installed: the ONNX file passed onnx.checker, outputs not compared")
    x = torch.randn(3, *net.input_shape)  # a batch size other than the export's example (2)
    torch.save(x, tmp_path / "x.pt")
    if fmt == "python":
        torch.save(net.state_dict(), tmp_path / "weights.pt")
    r = subprocess.run([sys.executable, "-I", "-c", LOADER, fmt, str(path), str(tmp_path / "x.pt"),
                        str(tmp_path / "y.pt")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    y = torch.load(tmp_path / "y.pt", weights_only=True)
    with torch.no_grad():
        expected = net(x)
    assert y.shape == expected.shape
    assert torch.allclose(y, expected, rtol=0, atol=1e-5), (y - expected).abs().max()


def test_unknown_format_is_a_user_error(tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'keras'.*pt2"):
        export(morphed_net(), tmp_path / "m", "keras")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_pt2_by_default_and_replaces_atomically(tmp_path):
    morphed_net().save(tmp_path / "net")
    r = CliRunner().invoke(main, ["export", str(tmp_path / "net")])
    assert r.exit_code == 0, r.output
    target = tmp_path / "net" / FORMATS["pt2"]
    first = torch.export.load(str(target))
    # a second export goes over the first through a rename: nothing else is left in the folder
    r = CliRunner().invoke(main, ["export", str(tmp_path / "net"), "--format", "pt2"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == ["graph.json", "model.pt2", "weights.pt"]
    x = torch.randn(2, 1, 8, 8)
    # the same net, the same exporter, the same kernels: bitwise
    assert torch.equal(torch.export.load(str(target)).module()(x), first.module()(x))
    # an export that fails halfway through its write leaves the old file as it was, and no temp
    before = target.read_bytes()

    def half_then_fail(program, f, *args, **kw):
        with open(f, "wb") as out:
            out.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch.export, "save", half_then_fail)
        r = CliRunner().invoke(main, ["export", str(tmp_path / "net"), "--format", "pt2"])
    assert r.exit_code != 0
    assert target.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == ["graph.json", "model.pt2", "weights.pt"]
