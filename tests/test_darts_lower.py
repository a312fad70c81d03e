"""lower(genotype) against an independent NetworkCIFAR written here from the reference's
structure: same parameter count for many genotypes and sizes, same outputs with the same
weights; plus the reference's own parameter figure, save/load, and drop path."""
import pytest
import torch
from torch import nn

from morphisms import GraphError, Network
from morphisms.layers import DropPath
from nash.darts import DARTS_V1, DARTS_V2, OPS, Genotype, GenotypeError, lower, reference_params
from test_darts_genotype import random_genotype

# ---------------------------------------------------------------------------------------------
# An independent NetworkCIFAR (plain nn.Modules, written from the reference's model.py layout)


class RefFactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def ref_op(name, C, stride):
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else RefFactorizedReduce(C, C)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    k = int(name[-1])
    if name.startswith("sep"):
        return nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, k, stride, k // 2, groups=C, bias=False),
                             nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C),
                             nn.ReLU(), nn.Conv2d(C, C, k, 1, k // 2, groups=C, bias=False),
                             nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C))
    return nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, k, stride, 2 * (k // 2), dilation=2, groups=C, bias=False),
                         nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C))


def relu_conv_bn(c_in, c_out):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class RefCell(nn.Module):
    def __init__(self, genotype, c_pp, c_p, C, reduction, reduction_prev, op_factory=ref_op):
        super().__init__()
        self.preprocess0 = RefFactorizedReduce(c_pp, C) if reduction_prev else relu_conv_bn(c_pp, C)
        self.preprocess1 = relu_conv_bn(c_p, C)
        pairs, self.concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal,
                                                                                       genotype.normal_concat)
        self.indices = [i for _, i in pairs]
        self.ops = nn.ModuleList(op_factory(op, C, 2 if reduction and i < 2 else 1) for op, i in pairs)
        self.multiplier = len(self.concat)

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(len(self.ops) // 2):
            states.append(self.ops[2 * k](states[self.indices[2 * k]])
                          + self.ops[2 * k + 1](states[self.indices[2 * k + 1]]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class RefAux(nn.Module):
    def __init__(self, C, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.ReLU(), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
                                      nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
                                      nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU())
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class RefNetworkCIFAR(nn.Module):
    def __init__(self, C, num_classes, layers, auxiliary, genotype, in_channels=3, op_factory=ref_op):
        super().__init__()
        self.layers_n, self.auxiliary = layers, auxiliary
        c_curr = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = RefCell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev, op_factory)
            reduction_prev = reduction
            self.cells.append(cell)
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == 2 * layers // 3:
                c_aux = c_p
        if auxiliary:
            self.auxiliary_head = RefAux(c_aux, num_classes)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x):
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == 2 * self.layers_n // 3 and self.auxiliary:
                aux = self.auxiliary_head(s1)
        return self.classifier(s1.mean(dim=(2, 3))), aux


def count_without_aux(model):
    # the reference's count_parameters_in_MB leaves the auxiliary head out
    return sum(p.numel() for n, p in model.named_parameters() if "auxiliary" not in n)


def live_modules(ref: nn.Module, x):
    """The reference's conv/bn/linear modules whose weights reach an output (a gradient flows
    to them): everything, unless the genotype's concat leaves ops dead."""
    ref.zero_grad(set_to_none=True)
    ref.train()
    out, aux = ref(x)
    (out.sum() + (aux.sum() if aux is not None else 0)).backward()
    mods = [m for m in ref.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    return [m for m in mods if m.weight.grad is not None]


def live_count(ref, x):
    return sum(p.numel() for m in live_modules(ref, x) for n, p in m.named_parameters())


def weighted_modules(net: Network):
    return [net.layers[n] for n, k in net.graph.nodes(data="kind") if k in ("conv", "bn", "linear")]


def copy_weights(ref: nn.Module, net: Network, x):
    """Creation order matches (stem, cells: preprocess, ops in genotype order; aux; classifier)."""
    src = live_modules(ref, x)
    dst = weighted_modules(net)
    assert len(src) == len(dst)
    def kind(m):  # nash's convs are morphisms.conv.Conv2d, an nn.Conv2d of the same function
        return next(t for t in (nn.Conv2d, nn.BatchNorm2d, nn.Linear) if isinstance(m, t))
    for a, b in zip(src, dst):
        assert kind(a) is kind(b)
        b.load_state_dict(a.state_dict())


def scramble_(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)


# ---------------------------------------------------------------------------------------------


def test_darts_v2_has_the_reference_parameter_count():
    # 3,349,342: the reference's figure for DARTS_V2 at 36 channels, 20 cells, 10 classes
    net = lower(DARTS_V2, channels=36, layers=20, num_classes=10)
    assert net.num_params() == 3_349_342
    assert count_without_aux(RefNetworkCIFAR(36, 10, 20, True, DARTS_V2)) == 3_349_342
    assert reference_params(DARTS_V2, 36, 20, 10) == 3_349_342


def test_darts_v1_matches_the_reference_structure():
    ref = RefNetworkCIFAR(36, 10, 20, False, DARTS_V1)
    assert lower(DARTS_V1, 36, 20, 10).num_params() == count_without_aux(ref) == 3_169_414


def test_auxiliary_head_adds_exactly_the_reference_head():
    with_aux = lower(DARTS_V2, 36, 20, 10, auxiliary=True)
    ref = RefNetworkCIFAR(36, 10, 20, True, DARTS_V2)
    assert with_aux.num_params() == sum(p.numel() for p in ref.parameters())
    assert with_aux.num_params() - 3_349_342 == sum(p.numel() for p in ref.auxiliary_head.parameters())


@pytest.mark.parametrize("seed", range(12))
def test_parameter_count_equals_independent_impl(seed):
    rng = torch.Generator().manual_seed(seed)
    steps = int(torch.randint(1, 5, (1,), generator=rng))
    concat = sorted(set(torch.randint(2, 2 + steps, (3,), generator=rng).tolist())) if seed % 3 == 0 else None
    g = random_genotype(rng, steps, concat)
    C = int(torch.randint(1, 9, (1,), generator=rng)) * 2
    layers = int(torch.randint(1, 9, (1,), generator=rng))
    classes = int(torch.randint(2, 12, (1,), generator=rng))
    ref = RefNetworkCIFAR(C, classes, layers, False, g, in_channels=1 + seed % 3)
    net = lower(g, C, layers, classes, in_channels=1 + seed % 3, input_size=8)
    # ops that no concat reads are dead: the reference keeps (and counts) them, lower drops them
    assert net.num_params() == live_count(ref, torch.randn(2, 1 + seed % 3, 8, 8))
    # the figure the reference would print, dead ops included
    assert reference_params(g, C, layers, classes, 1 + seed % 3) == count_without_aux(ref)
    # and the supernet's op registry builds the same ops (affine) as the reference layout
    ref_ops = RefNetworkCIFAR(C, classes, layers, False, g, 1 + seed % 3, op_factory=lambda n, c, s: OPS[n](c, s, True))
    assert count_without_aux(ref_ops) == count_without_aux(ref)


@pytest.mark.parametrize("genotype, size, layers, aux", [
    (DARTS_V2, 8, 3, False), (DARTS_V1, 32, 4, True), ("random", 16, 5, False), ("random", 32, 3, True),
    ("dead", 8, 4, False)])
def test_same_function_as_independent_impl(genotype, size, layers, aux):
    torch.manual_seed(1)
    if genotype in ("random", "dead"):
        g = random_genotype(torch.Generator().manual_seed(size + layers), concat=[3, 5] if genotype == "dead" else None)
    else:
        g = genotype
    ref = RefNetworkCIFAR(4, 5, layers, aux, g)
    net = lower(g, 4, layers, 5, auxiliary=aux, input_size=size)
    scramble_(ref, 0)
    x = torch.randn(3, 3, size, size)
    copy_weights(ref, net, x)
    for train in (False, True):  # eval: running stats; train: batch stats (drop path at 0)
        ref.train(train), net.train(train)
        r, r_aux = ref(x)
        n, n_aux = net.forward_with_aux(x)
        torch.testing.assert_close(n, r, rtol=1e-5, atol=1e-5)
        if aux:
            torch.testing.assert_close(n_aux[0], r_aux, rtol=1e-5, atol=1e-5)
        else:
            assert n_aux == []


@pytest.mark.parametrize("size", [8, 32])
def test_lowered_nets_run_forward(size):
    for g in (DARTS_V1, DARTS_V2):
        net = lower(g, channels=6, layers=3, num_classes=7, in_channels=1, input_size=size, drop_path=0.3)
        x = torch.randn(4, 1, size, size)
        out = net.train()(x)
        assert out.shape == (4, 7) and torch.isfinite(out).all()
        out.sum().backward()
        # every weight takes part: a finite gradient reaches each one
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
        # drop path is training noise only: eval mode is a deterministic function
        net.eval()
        assert torch.equal(net(x), net(x))


def test_save_load_round_trip(tmp_path):
    net = lower(DARTS_V2, channels=4, layers=4, num_classes=3, auxiliary=True, drop_path=0.2, input_size=32)
    scramble_(net, 3)
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    net.save(tmp_path / "net")
    back = Network.load(tmp_path / "net").eval()
    assert back.num_params() == net.num_params()
    a, a_aux = net.forward_with_aux(x)
    b, b_aux = back.forward_with_aux(x)
    assert torch.equal(a, b) and torch.equal(a_aux[0], b_aux[0])  # same modules, weights, layout: same kernels
    assert [m.drop_prob for m in back.modules() if isinstance(m, DropPath)][0] == 0.2


def test_drop_path_is_identity_in_eval_and_drops_whole_samples_in_training():
    net = lower(DARTS_V2, channels=4, layers=3, num_classes=3, drop_path=0.5, input_size=8)
    drops = [m for m in net.modules() if isinstance(m, DropPath)]
    # every op but the stride-1 skip connections gets one (reference); cells 1 and 2 reduce, and
    # in a reduction cell only edges from the cell inputs (index < 2) have stride 2
    def drops_in(pairs, reduction):
        return sum(1 for op, i in pairs if op != "skip_connect" or (reduction and i < 2))
    non_identity = drops_in(DARTS_V2.normal, False) + 2 * drops_in(DARTS_V2.reduce, True)
    assert len(drops) == non_identity
    x = torch.randn(2, 3, 8, 8)
    net.eval()
    ref = net(x)
    for m in drops:
        m.drop_prob = 0.0
    assert torch.equal(net(x), ref)
    m = DropPath(0.5).train()
    torch.manual_seed(0)
    y = m(torch.ones(64, 2, 3, 3))
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()  # whole samples
    assert torch.equal(m.eval()(torch.ones(3, 2)), torch.ones(3, 2))


def test_bad_sizes_and_genotypes_fail_clearly():
    with pytest.raises(GraphError, match="even sides"):
        lower(DARTS_V2, 4, 3, input_size=10)
    with pytest.raises(GraphError, match="auxiliary head needs at least an 8x8 map"):
        lower(DARTS_V2, 4, 3, auxiliary=True, input_size=16)
    with pytest.raises(GraphError, match="positive even"):
        lower(DARTS_V2, 5, 3)
    with pytest.raises(GenotypeError, match="missing field.*reduce"):
        lower("Genotype(normal=[])", 4, 3)
    with pytest.raises(GenotypeError, match="unknown op 'bogus'"):
        lower("Genotype(normal=[('bogus', 0)])", 4, 3)
    with pytest.raises(GenotypeError, match="'DARTS_V9' is not a published genotype"):
        lower("DARTS_V9", 4, 3)
    # the ways of naming a genotype that are accepted name the same network
    assert lower("DARTS_V2", 4, 3, input_size=8).to_json() == lower(DARTS_V2, 4, 3, input_size=8).to_json()
    assert Genotype.parse(str(DARTS_V2)) == DARTS_V2
