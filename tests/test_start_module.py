"""Starting a search from the user's own PyTorch model: `nash climb --start-module`, the
snapshot in the run directory, new heads, fresh weights for random search, and the way back out
as plain PyTorch source (`nash export --format python`)."""
import json
import subprocess
import sys
import textwrap

import torch
from click.testing import CliRunner

from morphisms import Network
from nash.cli import main
from nash.data import load_dataset
from nash.search import RandomConfig
from nash.search.random_search import random_network
from nash.search.start import start_network

# A ResNet-shaped model (basic blocks, a strided 1x1 downsample shortcut), narrow, for 8x8 digits.
MODEL = textwrap.dedent('''
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.layer1 = Block(8, 8, 1)
            self.layer2 = Block(8, 16, 2)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1))

    def resnet():
        return ResNet()

    def resnet5():
        return ResNet(5)
''')

CLIMB = ["--data", "digits", "--subset", "400", "--device", "cpu", "--steps", "1", "--n-neigh", "2", "--n-nm", "2",
         "--epoch-neigh", "2", "--epoch-final", "3", "--pretrain-epochs", "6", "--batch-size", "32", "--quiet"]


def model_file(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODEL)
    return path


def test_a_climb_grows_the_users_resnet_and_keeps_a_copy_of_it(tmp_path):
    path = model_file(tmp_path)
    import importlib.util
    loader = importlib.util.spec_from_file_location("user_model", path)
    user = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(user)
    torch.manual_seed(0)
    model = user.resnet()
    torch.save(model.state_dict(), tmp_path / "w.pt")

    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["climb", "--start-module", f"{path}:resnet", "--start-weights",
                                  str(tmp_path / "w.pt"), *CLIMB, "--out", str(out)])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["start"] == str((out / "start").resolve())  # the config points at the run's own copy
    # the copy is the user's model with the given weights: the same function (eval mode, fp32)
    start = Network.load(out / "start").eval()
    assert [n for n in start.graph if n.startswith("layer2_0") or n.startswith("layer2")]  # the module's names
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        want = model.eval()(x)
        torch.testing.assert_close(start(x), want, rtol=0, atol=1e-5 * float(want.abs().max()))
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 1 and res["start"]["params"] == start.num_params()
    # ten classes; 360 training images of 8x8 digits for a handful of epochs: measured 0.7-0.9
    assert res["final"]["test_acc"] > 0.4
    # the run no longer needs the user's file: show and export read the run directory only
    path.unlink()
    assert CliRunner().invoke(main, ["show", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["export", str(out), "--format", "python"])
    assert r.exit_code == 0, r.output
    best = Network.load(out / "best").eval()
    code = textwrap.dedent(f"""
        import importlib.util, sys, torch
        spec = importlib.util.spec_from_file_location("m", {str(out / "model.py")!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        net = m.Net(); net.load_state_dict(torch.load({str(out / "best" / "weights.pt")!r}, weights_only=True))
        torch.save(net.eval()(torch.load({str(tmp_path / "x.pt")!r})).detach(), {str(tmp_path / "y.pt")!r})
        assert "nash" not in sys.modules and "morphisms" not in sys.modules
    """)
    torch.save(x, tmp_path / "x.pt")
    p = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with torch.no_grad():
        want = best(x)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), want, rtol=0, atol=1e-5 * float(want.abs().max()))


def test_another_class_count_needs_new_head(tmp_path):
    path = model_file(tmp_path)
    r = CliRunner().invoke(main, ["climb", "--start-module", f"{path}:resnet5", *CLIMB, "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "--new-head" in r.stderr and not (tmp_path / "a").exists()
    data = load_dataset("digits", subset=100, seed=0)
    from nash.search.start import load_module
    net = start_network(load_module(f"{path}:resnet5"), data, new_head_seed=3)
    assert net.num_classes == 10 and net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_random_search_draws_fresh_weights_of_the_given_architecture(tmp_path):
    data = load_dataset("digits", subset=100, seed=0)
    torch.manual_seed(0)
    from morphisms import start_net
    given = start_net(1, 10, (4, 8), (8, 8))
    given.save(tmp_path / "net")
    cfg = RandomConfig(data="digits", subset=100, start=str(tmp_path / "net"), batch_size=16)
    a, b = (random_network(cfg, data, i, 0) for i in (0, 1))
    assert a.to_json() == given.to_json()  # the same architecture ...
    sa, sb, sg = a.state_dict(), b.state_dict(), given.state_dict()
    convs = [k for k in sg if k.endswith("weight") and sg[k].dim() == 4]
    assert all(not torch.equal(sa[k], sg[k]) and not torch.equal(sa[k], sb[k]) for k in convs)  # ... fresh weights
    again = random_network(cfg, data, 0, 0).state_dict()
    assert all(torch.equal(sa[k], again[k]) for k in sa)  # drawn from the candidate's seed
