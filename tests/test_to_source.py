"""to_source: a Network written as a plain PyTorch file, loaded in a fresh process without nash."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from morphisms import LAYERS, MorphismError, Network, add_skip, from_module, random_morphisms, to_source, write_source
from morphisms.graph import add_layer, new_graph
from morphisms.to_source import TEMPLATES

from conftest import scramble
from test_from_module import make, rel_err

RTOL32 = 1e-5  # as in test_morphisms: fp32, relative to the output's largest magnitude


def every_kind_net() -> Network:
    """One network with every layer kind the engine has, on a non-square input."""
    g = new_graph((3, 10, 12))
    a = add_layer(g, "conv", ["input"], out_channels=8, kernel_size=3, bias=True)
    a = add_layer(g, "bn", [a])
    r = add_layer(g, "relu", [a])
    b = add_layer(g, "conv", [r], out_channels=8, kernel_size=(1, 3), padding=(0, 2), dilation=2, groups=4)
    acts = [add_layer(g, k, [b], **({"approximate": "tanh"} if k == "gelu" else {}))
            for k in ("relu6", "gelu", "silu", "hardswish")]
    s = add_layer(g, "add", acts[:2], weighted=False)
    s = add_layer(g, "add", [s, acts[2], acts[3]], weighted=False)
    w = add_layer(g, "add", [r, s], weighted=True, lam=0.3)
    m = add_layer(g, "maxpool", [w], kernel_size=3, stride=2, padding=1)
    p = add_layer(g, "avgpool", [r], kernel_size=2, count_include_pad=False)
    c = add_layer(g, "crop", [add_layer(g, "identity", [r])], top=1, left=1)
    c = add_layer(g, "conv", [c], out_channels=8, kernel_size=1, stride=2, padding=0)
    z = add_layer(g, "zero", [p])
    d = add_layer(g, "drop_path", [add_layer(g, "conv", [z], out_channels=8, kernel_size=3)], drop_prob=0.2)
    cat = add_layer(g, "concat", [m, c, d])
    cat = add_layer(g, "dropout", [cat], p=0.3)
    v = add_layer(g, "global_pool", [cat])
    v = add_layer(g, "bn", [add_layer(g, "linear", [v], out_features=6)])
    add_layer(g, "output", [add_layer(g, "linear", [v], out_features=4)], name="output")
    flat = add_layer(g, "flatten", [add_layer(g, "maxpool", [r], kernel_size=4)])  # 8x2x3 -> 48
    add_layer(g, "aux_output", [add_layer(g, "linear", [flat], out_features=4)], name="aux")
    torch.manual_seed(0)
    net = scramble(Network(g)).eval()
    with torch.no_grad():
        net.layers[w].lam.fill_(0.3)
    assert {g.nodes[n]["kind"] for n in g} == set(LAYERS)
    return net


def darts_nets():
    from nash.darts.lower import lower  # the lowered kinds: weighted adds, crops, zeros, drop path, aux heads
    torch.manual_seed(1)
    darts = lower("DARTS_V2", channels=4, layers=3, num_classes=3, auxiliary=True, drop_path=0.2, input_size=(32, 40))
    nb201 = lower("|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_3x3~0|none~1|skip_connect~2|", channels=4,
                  layers=1, num_classes=3, input_size=(12, 16))
    assert any(nb201.graph.nodes[n]["kind"] == "zero" for n in nb201.graph)
    return {"darts_v2": scramble(darts, 2).eval(), "nb201": scramble(nb201, 3).eval()}


def test_every_layer_kind_has_a_source_template():
    assert set(LAYERS) - {"input", "output", "aux_output", "identity"} <= set(TEMPLATES)


# the child process: nash and morphisms cannot be imported there, the file must not need them
# (python -I alone is not enough: the editable install puts nash on every interpreter's path)
CHILD = textwrap.dedent("""
    import importlib.abc, importlib.util, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("nash", "morphisms"):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, Block())
    import torch

    for name in json.load(open("names.json")):
        spec = importlib.util.spec_from_file_location(f"exported_{name}", f"{name}/model.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = mod.Net()
        model.load_state_dict(torch.load(f"{name}/weights.pt", weights_only=True))  # strict: every key fits
        model.eval()
        x = torch.load(f"{name}/x.pt", weights_only=True)
        with torch.no_grad():
            out = {"y": model(x)}
            if hasattr(model, "forward_with_aux"):
                out["main"], out["aux"] = model.forward_with_aux(x)
        torch.save(out, f"{name}/out.pt")
    assert not any(m.split(".")[0] in ("nash", "morphisms") for m in sys.modules)
    print("ok")
""")


def test_written_modules_load_the_saved_weights_in_a_process_without_nash(tmp_path):
    model, x = make("resnet18")
    imported = from_module(model, x)
    grown, applied = random_morphisms(imported, 6, rng=5)  # weighted adds, concats, grown widths
    nets = {"every_kind": every_kind_net(), "resnet18_grown": grown.eval(), **darts_nets()}
    inputs = {}
    for name, net in nets.items():
        net.save(tmp_path / name)  # graph.json and weights.pt, as a run's best/ folder holds them
        write_source(net, tmp_path / name / "model.py")
        inputs[name] = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(len(name)))
        torch.save(inputs[name], tmp_path / name / "x.pt")
    (tmp_path / "names.json").write_text(json.dumps(list(nets)))
    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    # -I: no PYTHONPATH, no user site, neither the script's folder nor the cwd on sys.path
    done = subprocess.run([sys.executable, "-I", str(tmp_path / "child.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    for name, net in nets.items():
        out = torch.load(tmp_path / name / "out.pt", weights_only=True)
        with torch.no_grad():
            main, aux = net.forward_with_aux(inputs[name])
            assert rel_err(out["y"], net(inputs[name])) <= RTOL32, name
        if aux:
            assert rel_err(out["main"], main) <= RTOL32 and len(out["aux"]) == len(aux)
            for a, b in zip(out["aux"], aux):
                assert rel_err(a, b) <= RTOL32, name


def test_the_source_reads_like_a_hand_written_model():
    model, x = make("resnet18")
    src = to_source(from_module(model, x), class_name="ResNet")
    assert "class ResNet(nn.Module):" in src and "    def forward(self, x):" in src
    assert "layer2_0_conv1 = self.layers.layer2_0_conv1(layer1_1_relu_1)" in src
    assert "layer2_0_add = layer2_0_bn2 + layer2_0_downsample_1" in src
    assert "layer2_0_relu = torch.relu(layer2_0_bn1)" in src
    assert "import nash" not in src and "from nash" not in src and "morphisms" not in src
    compile(src, "model.py", "exec")


def test_a_written_module_imports_again_with_the_same_function():
    model, x = make("mixed")
    net = from_module(model, x)
    scope = {}
    exec(compile(to_source(net), "model.py", "exec"), scope)
    again = scope["Net"]()
    again.load_state_dict(net.state_dict())
    again.eval()
    assert rel_err(from_module(again, x)(x), model(x)) <= RTOL32


def test_train_mode_matches_too():
    """BN statistics move alike, and drop path / dropout draw alike from torch's generator."""
    net = every_kind_net().train()
    scope = {}
    exec(compile(to_source(net), "model.py", "exec"), scope)
    copy = scope["Net"]()
    copy.load_state_dict(net.state_dict())
    copy.train()
    x = torch.randn(4, *net.input_shape)
    torch.manual_seed(3)
    want = net(x)
    torch.manual_seed(3)
    got = copy(x)
    assert rel_err(got, want) <= RTOL32
    for k, v in net.state_dict().items():
        torch.testing.assert_close(copy.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_bad_class_name_and_unknown_kind_give_one_line(monkeypatch):
    net = every_kind_net()
    with pytest.raises(MorphismError, match="identifier"):
        to_source(net, class_name="my net")
    monkeypatch.delitem(TEMPLATES, "crop")
    with pytest.raises(MorphismError, match="no source template for layer kind.*crop"):
        to_source(net)
