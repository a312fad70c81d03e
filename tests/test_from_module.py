"""from_module: a user's nn.Module imported through torch.fx, and the morphisms on it.

The models are written here (torchvision is an optional extra), narrow so the tests are fast,
with random weights and scrambled BN statistics, run at a non-square input size."""
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from morphisms import MorphismError, MorphismsError, Network, deepen, from_module, moves, random_morphisms, widen

from conftest import scramble

# float32 tolerance on outputs relative to their largest magnitude, as in test_morphisms (what we
# reach: 0 for the import itself, which runs the same kernels; ~1e-7 after morphisms)
RTOL32 = 1e-5
RTOL64 = 1e-12
SIZE = (36, 44)  # non-square: rows and columns halve differently


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


# ---------------------------------------------------------------- models, as their authors write them


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)  # called twice, as torchvision does
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, widths=(4, 8, 8, 16), num_classes=5, cin=3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-3, momentum=0.05)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = widths[0]
        for i, w in enumerate(widths):
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
            c = w
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG11(nn.Module):
    CFG = (4, "M", 8, "M", 8, 8, "M", 16, 16, "M", 16, 16, "M")

    def __init__(self, num_classes=5, cin=3, hidden=16):
        super().__init__()
        layers, c = [], cin
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, hidden),
                                        nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.view(x.size(0), -1))


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.use_res = stride == 1 and cin == cout
        layers = [] if t == 1 else [ConvBNReLU6(cin, hidden, 1)]
        layers += [ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),  # depthwise
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]  # linear bottleneck
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = ((1, 4, 1, 1), (6, 6, 2, 2), (6, 8, 2, 2), (6, 8, 1, 1), (6, 12, 2, 2))  # (t, c, n, s), narrowed

    def __init__(self, num_classes=5, cin=3):
        super().__init__()
        feats, c = [ConvBNReLU6(cin, 8, stride=2)], 8
        for t, w, n, s in self.SETTING:
            for i in range(n):
                feats.append(InvertedResidual(c, w, s if i == 0 else 1, t))
                c = w
        feats.append(ConvBNReLU6(c, 24, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(24, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).reshape(x.shape[0], -1)
        return self.classifier(x)


class Mixed(nn.Module):
    """The rest of the vocabulary, written the ways people write it."""

    def __init__(self, cin=2):
        super().__init__()
        self.stem = nn.Conv2d(cin, 6, (1, 3), padding=(0, 1), bias=True)
        self.bn = nn.BatchNorm2d(6, momentum=None)  # a cumulative average
        self.dil = nn.Conv2d(6, 6, 3, padding="same", dilation=2, groups=2)
        self.acts = nn.ModuleList([nn.GELU(), nn.SiLU(), nn.Hardswish(), nn.ReLU6(), nn.GELU("tanh")])
        self.pool = nn.AvgPool2d(3, 2, 1)  # count_include_pad=True, torch's default
        self.branch = nn.Sequential(nn.Conv2d(6, 4, 1), nn.Identity(), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(10, 8), nn.BatchNorm1d(8), nn.Dropout(0.1))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)), inplace=True)
        y = self.dil(x)
        for act in self.acts:
            y = act(y)
        x = torch.add(x, y)
        x = F.max_pool2d(x.relu(), 2)
        x = torch.cat([x, self.branch(x)], dim=1)
        x = self.pool(F.silu(torch.relu(x)))
        x = x.mean((2, 3), keepdim=True)
        return self.fc(F.hardswish(self.head(x)))


class VGG11Flat(VGG11):
    """torchvision's VGG head: the last map flattened whole (its AdaptiveAvgPool2d((7, 7)) is the
    identity on a 7x7 map; here the map is 2x2)."""
    CFG = VGG11.CFG[:-1]

    def __init__(self, num_classes=5, cin=3, hidden=16):
        super().__init__(num_classes, cin, hidden)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier[0] = nn.Linear(16 * 2 * 2, hidden)


MODELS = {"resnet18": ResNet18, "vgg11": VGG11, "vgg11_flat": VGG11Flat, "mobilenet_v2": MobileNetV2, "mixed": Mixed}


def make(name, seed=0):
    torch.manual_seed(seed)
    model = scramble(MODELS[name](), seed).eval()
    cin = model.stem.in_channels if name == "mixed" else 3
    x = torch.randn(3, cin, *SIZE, generator=torch.Generator().manual_seed(seed + 1))
    return model, x


# ---------------------------------------------------------------- the import


@pytest.mark.parametrize("name", MODELS)
def test_imported_network_computes_the_module_function(name):
    model, x = make(name)
    net = from_module(model, x)
    assert isinstance(net, Network) and not net.training
    assert rel_err(net(x), model(x)) <= RTOL32
    assert net.num_params() == sum(p.numel() for p in model.parameters())
    assert sum(b.numel() for b in net.buffers()) == sum(b.numel() for b in model.buffers())
    # and it is a plain saved network: it loads without the user's code
    assert net.input_shape == (x.shape[1], *SIZE)


@pytest.mark.parametrize("name", MODELS)
def test_train_mode_updates_the_same_bn_statistics(name):
    model, x = make(name)
    net = from_module(model, x)
    model.train(), net.train()
    for _ in range(2):
        torch.manual_seed(7)  # the dropout masks: the same draws in the same order
        want = model(x)
        torch.manual_seed(7)
        got = net(x)
        assert rel_err(got, want) <= RTOL32
    bns = {q: m for q, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert bns
    for q, m in bns.items():
        mine = net.layers[q.replace(".", "_")]
        assert (mine.eps, mine.momentum) == (m.eps, m.momentum)
        torch.testing.assert_close(mine.running_mean, m.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(mine.running_var, m.running_var, rtol=1e-5, atol=1e-6)
        assert int(mine.num_batches_tracked) == int(m.num_batches_tracked) == 2


def test_node_names_follow_the_module_names():
    model, x = make("resnet18")
    net = from_module(model, x)
    g = net.graph
    assert g.nodes["layer2_0_conv1"]["kind"] == "conv" and g.nodes["layer2_0_conv1"]["stride"] == 2
    assert g.nodes["layer2_0_downsample_0"]["kernel_size"] == 1  # the strided 1x1 shortcut
    assert g.nodes["layer2_0_add"]["kind"] == "add" and not g.nodes["layer2_0_add"]["weighted"]
    # the block's one ReLU module, called twice, is two nodes
    assert {"layer2_0_relu", "layer2_0_relu_1"} <= set(g)
    assert g.nodes["bn1"]["eps"] == 1e-3 and g.nodes["bn1"]["momentum"] == 0.05
    assert g.nodes["avgpool"]["kind"] == "global_pool" and g.nodes["fc"]["kind"] == "linear"


def test_the_importer_leaves_the_module_alone():
    model, x = make("vgg11")
    model.train()
    model.features[1].eval()  # a mixed-mode module keeps its modes
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = from_module(model, x)
    assert net.training and model.training and not model.features[1].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the network holds copies: training it does not move the user's weights
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    assert torch.equal(next(model.parameters()), before["features.0.weight"])


def test_float64_import_and_morphisms_are_exact_up_to_rounding():
    model, x = make("mixed")
    model, x = model.double(), x.double()
    net = from_module(model, x)
    assert next(net.parameters()).dtype == torch.float64
    y = model(x)
    assert rel_err(net(x), y) <= RTOL64
    child, applied = random_morphisms(net, 10, rng=4)
    assert rel_err(child.eval()(x), y) <= RTOL64, [str(m) for m in applied]


def _c(cin=3, cout=3, **kw):
    return nn.Conv2d(cin, cout, 3, padding=1, **kw)


SPELLINGS = {
    "mean over a list": (lambda s, x: s.fc(x.mean([2, 3])), dict(fc=nn.Linear(3, 2))),
    "torch.mean over negative dims": (lambda s, x: s.fc(torch.mean(x, dim=(-2, -1))), dict(fc=nn.Linear(3, 2))),
    "adaptive pool, flatten": (lambda s, x: s.fc(s.pool(x).flatten(1)), dict(pool=nn.AdaptiveAvgPool2d(1),
                                                                          fc=nn.Linear(3, 2))),
    "adaptive pool, view(-1, C)": (lambda s, x: s.fc(s.pool(x).view(-1, 3)), dict(pool=nn.AdaptiveAvgPool2d(1),
                                                                               fc=nn.Linear(3, 2))),
    "functional adaptive pool, torch.flatten": (
        lambda s, x: s.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)), dict(fc=nn.Linear(3, 2))),
    "flatten of a real 1x1 map": (lambda s, x: s.fc(s.flat(F.max_pool2d(x, (6, 8)))),
                                  dict(flat=nn.Flatten(), fc=nn.Linear(3, 2))),
    "view(x.shape[0], -1) of a 1x1 map": (lambda s, x: s.fc(F.avg_pool2d(x, (6, 8)).view(x.shape[0], -1)),
                                          dict(fc=nn.Linear(3, 2))),
    "torch.add residual": (lambda s, x: torch.add(x, s.c(x)), dict(c=_c())),
    "Tensor.add residual": (lambda s, x: x.add(s.c(x)), dict(c=_c())),
    "+= residual": (lambda s, x: _iadd(s.c(x), x), dict(c=_c())),
    "in-place relu, then a read of its input": (lambda s, x: _relu_then_read(s.bn(x)), dict(bn=nn.BatchNorm2d(3))),
    "torch.cat on dim -3": (lambda s, x: torch.cat((x, s.c(x)), dim=-3), dict(c=_c(cout=2))),
    "padding valid and same": (lambda s, x: s.b(s.a(x)), dict(a=nn.Conv2d(3, 4, 3, padding="valid"),
                                                              b=nn.Conv2d(4, 4, (3, 5), padding="same", bias=False))),
    "hardtanh as relu6": (lambda s, x: F.hardtanh(x, 0.0, 6.0) + s.h(x), dict(h=nn.Hardtanh(0.0, 6.0))),
    "strided, dilated, grouped conv": (lambda s, x: s.c(x), dict(c=nn.Conv2d(3, 6, 3, stride=(2, 1), padding=2,
                                                                            dilation=2, groups=3))),
    "pools with padding and count_include_pad": (
        lambda s, x: F.avg_pool2d(x, 3, 2, 1) + s.p(x) + F.max_pool2d(x, 3, stride=2, padding=1),
        dict(p=nn.AvgPool2d(3, 2, 1, count_include_pad=False))),
}


def _iadd(a, b):
    a += b
    return a


def _relu_then_read(y):
    torch.relu_(y)  # y itself now holds relu(y)
    return y + y


@pytest.mark.parametrize("case", SPELLINGS)
def test_equivalent_spellings_import_to_the_same_function(case):
    fn, modules = SPELLINGS[case]
    torch.manual_seed(0)
    model = scramble(Wrap(fn, **modules)).eval()
    x = torch.randn(2, 3, 6, 8)
    net = from_module(model, x)
    assert rel_err(net(x), model(x)) <= RTOL32


# ---------------------------------------------------------------- morphisms on imported networks


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "vgg11_flat", "mobilenet_v2"])
def test_every_listed_move_preserves_the_function(name):
    model, x = make(name)
    net = from_module(model, x[:2])
    y = model(x[:2])
    options = moves(net)
    assert {m.kind for m in options} == {"deepen", "widen", "add_skip", "insert_bn"}
    for i, m in enumerate(options):
        assert rel_err(m.apply(net, seed=i).eval()(x[:2]), y) <= RTOL32, str(m)


@pytest.mark.parametrize("name", list(MODELS))
def test_random_morphism_sequences_preserve_the_function(name):
    model, x = make(name)
    net = from_module(model, x)
    y = model(x)
    for seed in range(20):
        child, applied = random_morphisms(net, 3, rng=random.Random(seed))
        assert applied
        assert rel_err(child.eval()(x), y) <= RTOL32, (seed, [str(m) for m in applied])


def test_calibrated_moves_leave_the_global_generator_alone_and_match_in_train_mode():
    """Calibration runs the parent in train mode on the batch: its dropout must stay off there,
    as drop path does (noise, and a draw from torch's global generator)."""
    model, _ = make("vgg11")
    x = torch.randn(8, 3, *SIZE, generator=torch.Generator().manual_seed(3))
    net = from_module(model, x)
    before = torch.get_rng_state()
    child, applied = random_morphisms(net, 6, rng=1, calibrate=x, kinds=("deepen", "insert_bn"))
    assert torch.equal(torch.get_rng_state(), before) and applied
    assert rel_err(child.eval()(x), net(x)) <= RTOL32
    net.train(), child.train()
    torch.manual_seed(0)
    want = net(x)
    torch.manual_seed(0)
    got = child(x)
    # train-mode BN divides by the batch std, so small variances amplify rounding (test_morphisms)
    assert rel_err(got, want) <= 1e-4, [str(m) for m in applied]


def test_depthwise_convs_grow_with_their_input_and_grouped_ones_block_widening():
    model, x = make("mobilenet_v2")
    net = from_module(model, x)
    g = net.graph
    y = model(x)
    depthwise = {n for n in g if g.nodes[n]["kind"] == "conv" and g.nodes[n]["groups"] > 1}
    assert "features_2_conv_1_0" in depthwise
    widened = {dict(m.args)["node"] for m in moves(net, ["widen"])}
    assert not widened & depthwise  # a depthwise conv's width is its input's
    with pytest.raises(MorphismError, match="depthwise conv") as e:
        widen(net, "features_2_conv_1_0")
    assert "\n" not in str(e.value)
    # the expansion conv feeds its depthwise conv through BN and ReLU6: the depthwise conv grows
    # with it (new random filters), and the projection conv reads the new channels with zeros
    assert "features_2_conv_0_0" in widened
    child = widen(net, "features_2_conv_0_0", 2.0, seed=1).eval()
    assert child.graph.nodes["features_2_conv_1_0"]["groups"] == 2 * g.nodes["features_2_conv_1_0"]["groups"]
    assert rel_err(child(x), y) <= RTOL32
    # a grouped conv that is not depthwise (groups=2 of 6 channels) cannot take more channels
    mixed, xm = make("mixed")
    mnet = from_module(mixed, xm)
    assert mnet.graph.nodes["dil"]["groups"] == 2
    assert "stem" not in {dict(m.args)["node"] for m in moves(mnet, ["widen"])}
    with pytest.raises(MorphismError, match="'dil' is a grouped conv"):
        widen(mnet, "stem")


def test_a_flattened_map_widens_its_classifier_in_blocks():
    model, x = make("vgg11_flat")
    net = from_module(model, x)
    g = net.graph
    last = "features_25"
    assert g.nodes["view"]["kind"] == "flatten" and net.shapes["view"] == (64,)  # x.view(x.size(0), -1)
    assert g.nodes[last]["kind"] == "conv" and last in {dict(m.args)["node"] for m in moves(net, ["widen"])}
    child = widen(net, last, 1.5, seed=2).eval()
    assert child.shapes[last][0] == 24 and child.layers.classifier_0.in_features == 24 * 4
    w_old, w_new = net.layers.classifier_0.weight, child.layers.classifier_0.weight
    assert torch.equal(w_new[:, :64], w_old) and not w_new[:, 64:].any()  # the new channels' 4-column blocks: 0
    assert rel_err(child(x), model(x)) <= RTOL32


def test_deepen_is_offered_only_where_its_relu_is_the_identity():
    model, x = make("mixed")
    net = from_module(model, x)
    g = net.graph
    after = {dict(m.args)["after"] for m in moves(net, ["deepen"])}
    kinds = {n: g.nodes[n]["kind"] for n in g}
    assert kinds["acts_3"] == "relu6" and "acts_3" in after  # ReLU6 is >= 0: deepen is exact after it
    for n in ("acts_0", "acts_1", "acts_2", "acts_4", "silu", "pool"):  # may be negative (pool: of a SiLU)
        assert n not in after, n
    with pytest.raises(MorphismError, match="negative"):
        deepen(net, "acts_0")
    assert "max_pool2d" in after and "cat" in after  # a pool of a ReLU, and a concat of ReLUs


# ---------------------------------------------------------------- what is not supported: one line naming it


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c, c)

    def forward(self, x):
        return x * torch.sigmoid(self.fc1(x))


class SEBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.se = SE(c)

    def forward(self, x):
        return self.se(self.conv(x))


class WithLayer3(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer3 = nn.Sequential(nn.ReLU(), block)

    def forward(self, x):
        return self.layer3(self.stem(x))


class Wrap(nn.Module):
    """forward(x) = fn(self, x), for one-line test models."""

    def __init__(self, fn, **modules):
        super().__init__()
        self.fn = fn
        for k, m in modules.items():
            setattr(self, k, m)

    def forward(self, x):
        return self.fn(self, x)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return self.conv(x)
        return x


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Conv2d(3, 12, 1)

    def forward(self, x):
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)
        return torch.softmax(q.transpose(1, 2) @ k, -1) @ v.transpose(1, 2)


class Aliased(nn.Module):
    """`out += x` where the pre-add tensor is read again: fx records the add out of place."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        out = self.bn(x)
        kept = out
        out += x
        return kept


conv3 = lambda: nn.Conv2d(3, 3, 3, padding=1)  # noqa: E731

UNSUPPORTED = {
    "linear on a map": (lambda: WithLayer3(nn.Sequential(nn.Identity(), SEBlock(4))),
                        ["layer3.1.1.se.fc1: Linear on a 4-d tensor is not supported"]),
    "layer norm": (lambda: Wrap(lambda s, x: s.ln(x), ln=nn.LayerNorm([3, 6, 8])), ["ln: LayerNorm is not supported"]),
    "functional layer norm": (lambda: Wrap(lambda s, x: F.layer_norm(x, x.shape[1:])), ["layer_norm", "not supported"]),
    "attention module": (lambda: Wrap(lambda s, x: s.attn(x, x, x)[0], attn=nn.MultiheadAttention(8, 2)),
                         ["attn: MultiheadAttention is not supported"]),
    "attention function": (lambda: Wrap(lambda s, x: F.scaled_dot_product_attention(x, x, x)),
                           ["forward: torch.nn.functional.scaled_dot_product_attention is not supported",
                            "attention"]),
    # written out by hand: the first op that is no layer of the engine is named
    "hand-written attention": (Attention, ["forward: Tensor.flatten(start_dim=2, end_dim=-1) is not supported"]),
    "control flow": (lambda: Wrap(lambda s, x: s.block(x), block=Branchy()),
                     ["block: data-dependent control flow"]),
    "adaptive pool to 7x7, as torchvision's VGG": (
        lambda: Wrap(lambda s, x: s.pool(x).flatten(1), pool=nn.AdaptiveAvgPool2d((7, 7))),
        ["pool: AdaptiveAvgPool2d((7, 7)) of a 6x8 map is not supported"]),
    "sigmoid gate": (lambda: Wrap(lambda s, x: x * s.gate(x), gate=nn.Sigmoid()), ["gate: Sigmoid is not supported"]),
    "shared weights": (lambda: Wrap(lambda s, x: s.conv(s.conv(x)), conv=conv3()), ["conv", "called twice"]),
    "two outputs": (lambda: Wrap(lambda s, x: (s.conv(x), x), conv=conv3()), ["returns a tuple"]),
    "a constant added": (lambda: Wrap(lambda s, x: s.conv(x) + 1, conv=conv3()), ["forward: operator.add of a tensor and a constant (1) is not supported"]),
    "a parameter used directly": (lambda: Wrap(lambda s, x: x * s.scale, scale=nn.Parameter(torch.ones(3, 1, 1))),
                                  ["scale", "parameter"]),
    "interpolation": (lambda: Wrap(lambda s, x: F.interpolate(x, scale_factor=2)), ["interpolate is not supported"]),
    "cat on the batch": (lambda: Wrap(lambda s, x: torch.cat([x, x])), ["torch.cat on dim 0 is not supported"]),
    "reflect padding": (lambda: Wrap(lambda s, x: s.c(x), c=nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")),
                        ["c: Conv2d with padding_mode='reflect' is not supported"]),
    "ceil mode": (lambda: Wrap(lambda s, x: s.p(x), p=nn.MaxPool2d(3, 2, ceil_mode=True)), ["p: MaxPool2d", "ceil_mode"]),
    "leaky relu": (lambda: Wrap(lambda s, x: s.act(x), act=nn.LeakyReLU()), ["act: LeakyReLU is not supported"]),
    "a view that is not a flatten": (lambda: Wrap(lambda s, x: x.view(x.size(0), 3, -1)), ["view", "not supported"]),
    "an in-place add on a tensor read again": (Aliased, ["differs from the module", "in-place"]),
}


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_unsupported_constructs_give_one_line_naming_them(case):
    make_model, words = UNSUPPORTED[case]
    torch.manual_seed(0)
    model = make_model().eval()
    with pytest.raises(MorphismError) as e:
        from_module(model, torch.randn(2, 3, 6, 8))
    msg = str(e.value)
    assert isinstance(e.value, MorphismsError) and "\n" not in msg and "Traceback" not in msg
    for w in words:
        assert w in msg, msg


def test_bad_arguments_give_one_line():
    with pytest.raises(MorphismError, match="nn.Module"):
        from_module(lambda x: x, torch.randn(1, 3, 4, 4))
    with pytest.raises(MorphismError, match=r"\(N, C, H, W\)"):
        from_module(nn.ReLU(), torch.randn(3, 4, 4))
    with pytest.raises(MorphismError, match="second input"):
        from_module(Wrap2(), torch.randn(1, 3, 4, 4))


class Wrap2(nn.Module):
    def forward(self, x, y):
        return x + y


# ---------------------------------------------------------------- what a climb from an imported model needs


def test_imported_networks_save_and_load(tmp_path):
    model, x = make("mixed")  # non-square kernels, padding pairs, momentum=None: attributes JSON must keep
    net = from_module(model, x)
    net.save(tmp_path / "net")
    again = Network.load(tmp_path / "net").eval()
    assert again.to_json() == net.to_json()
    assert torch.equal(again(x), net(x))


def test_new_head_replaces_the_classifier_and_keeps_the_features():
    from morphisms import new_head
    model, x = make("resnet18")
    net = from_module(model, x)
    a, b, c = (new_head(net, 10, seed=s) for s in (1, 1, 2))
    assert a.num_classes == 10 and a(x).shape == (3, 10)
    assert torch.equal(a.layers.fc.weight, b.layers.fc.weight) and not torch.equal(a.layers.fc.weight, c.layers.fc.weight)
    feats = net.activations(x, ["avgpool"])["avgpool"]
    assert torch.equal(a.activations(x, ["avgpool"])["avgpool"], feats)
    assert net.num_classes == 5  # the parent is untouched
    with pytest.raises(MorphismError, match="not by a linear layer"):
        new_head(from_module(Wrap(lambda s, x: s.c(x), c=nn.Conv2d(3, 2, 1)), x), 10)
    with pytest.raises(MorphismError, match="positive int"):
        new_head(net, 0)


def test_reinitialized_is_the_same_architecture_drawn_from_the_seed():
    from morphisms import reinitialized
    model, x = make("mobilenet_v2")
    net = from_module(model, x)
    before = torch.get_rng_state()
    a, b, c = (reinitialized(net, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), before)
    assert a.to_json() == net.to_json() and a.num_params() == net.num_params()
    sa, sb, sc, sn = (n.state_dict() for n in (a, b, c, net))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    conv = "layers.features_0_0.weight"
    assert not torch.equal(sa[conv], sc[conv]) and not torch.equal(sa[conv], sn[conv])
    bn = "layers.features_0_1.running_var"
    assert torch.equal(sa[bn], torch.ones_like(sa[bn]))
