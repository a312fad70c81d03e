"""nash.darts genotypes and the argmax selection rule."""
import json

import pytest
import torch

from nash.darts import (DARTS_SPACE, DARTS_V1, DARTS_V2, GENOTYPES, Genotype, GenotypeError, argmax_genotype,
                        get_genotype)

# The reference's published text, verbatim (genotypes.py of the DARTS authors' code).
V2_TEXT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
           "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
           "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
           "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
           "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def random_genotype(rng: torch.Generator, steps=4, concat=None):
    ops = [o for o in DARTS_SPACE.ops if o != "none"]

    def cell():
        return [(ops[int(torch.randint(len(ops), (1,), generator=rng))], int(torch.randint(2 + k // 2, (1,), generator=rng)))
                for k in range(2 * steps)]
    concat = list(range(2, 2 + steps)) if concat is None else concat
    return Genotype.make(cell(), concat, cell(), concat)


def test_published_text_is_the_reference_format():
    assert str(DARTS_V2) == V2_TEXT
    assert Genotype.parse(V2_TEXT) == DARTS_V2
    assert GENOTYPES["DARTS"] is DARTS_V2 and get_genotype("darts_v2") is DARTS_V2 and get_genotype("DARTS_V1") is DARTS_V1


@pytest.mark.parametrize("seed", range(20))
def test_text_and_json_round_trip(seed):
    rng = torch.Generator().manual_seed(seed)
    g = random_genotype(rng, steps=int(torch.randint(1, 6, (1,), generator=rng)))
    assert Genotype.parse(str(g)) == g
    assert Genotype.from_json(json.loads(json.dumps(g.to_json()))) == g
    assert get_genotype(str(g)) == g and get_genotype(json.dumps(g.to_json())) == g


def test_round_trip_published_and_files(tmp_path):
    for g in (DARTS_V1, DARTS_V2):
        assert Genotype.parse(str(g)) == g and Genotype.from_json(g.to_json()) == g
    (tmp_path / "g.txt").write_text(str(DARTS_V1) + "\n")
    (tmp_path / "g.json").write_text(json.dumps(DARTS_V2.to_json()))
    assert get_genotype(str(tmp_path / "g.txt")) == DARTS_V1
    assert get_genotype(tmp_path / "g.json") == DARTS_V2


def test_parse_accepts_reference_search_output_with_range():
    text = V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert Genotype.parse(text) == DARTS_V2


@pytest.mark.parametrize("text, fragment", [
    ("", "not valid syntax"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "not valid syntax"),
    ("Foo(normal=[])", "must look like Genotype("),
    ("__import__('os').system('true')", "must look like Genotype("),
    (V2_TEXT.replace("'sep_conv_3x3', 0", "'sep_conv_9x9', 0", 1), "unknown op 'sep_conv_9x9'"),
    (V2_TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "input 5 of node 5 must be in 0..4"),
    (V2_TEXT.replace("('max_pool_3x3', 0)", "('max_pool_3x3', -1)", 1), "input -1"),
    (V2_TEXT.replace("('dil_conv_3x3', 2)", "('none', 2)"), "'none' means no edge"),
    (V2_TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', '2')"), "expected an (op name, input index) pair"),
    (V2_TEXT.replace(", ('dil_conv_3x3', 2)", ""), "two (op, input) pairs per intermediate node"),
    (V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 9]"), "node 9 does not exist"),
    (V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 2]"), "repeats a node"),
    (V2_TEXT.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[1, 2, 3, 4, 5]"), "cell inputs"),
    (V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=open('x')"), "only literals"),
    (V2_TEXT.replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing field(s): reduce_concat"),
    ("Genotype(normal=[('conv_9x9', 0)])", "unknown op 'conv_9x9'"),  # the op, before the missing fields
    (V2_TEXT.replace("reduce_concat=", "reduce_concatx="), "unknown Genotype field 'reduce_concatx'"),
    (V2_TEXT.replace("normal=[", "normal=[x, "), "not a literal"),
])
def test_malformed_text_raises_one_line(text, fragment):
    with pytest.raises(GenotypeError) as e:
        Genotype.parse(text)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_unknown_name_or_missing_file():
    with pytest.raises(GenotypeError, match="not a published genotype"):
        get_genotype("DARTS_V9")


def _alphas(strong: dict, rows=14, ops=8):
    """Logits: all 0, except strong[(edge, op)] = value."""
    a = torch.zeros(rows, ops)
    for (e, k), v in strong.items():
        a[e, k] = v
    return a


def test_argmax_rule_on_constructed_alphas():
    ops = DARTS_SPACE.ops
    k = {o: i for i, o in enumerate(ops)}
    # Edge rows: node 2 <- 0,1 (rows 0,1); node 3 <- 0,1,2 (rows 2-4); node 4 <- 0..3 (5-8); node 5 <- 0..4 (9-13)
    normal = _alphas({
        (0, k["sep_conv_3x3"]): 3.0, (1, k["skip_connect"]): 2.0,            # node 2: both edges
        (2, k["none"]): 9.0, (2, k["max_pool_3x3"]): 0.5,                    # node 3: 'none' must not count
        (3, k["dil_conv_5x5"]): 2.0, (4, k["avg_pool_3x3"]): 1.0,
        (5, k["sep_conv_5x5"]): 1.0, (8, k["dil_conv_3x3"]): 4.0,            # node 4: edge 3 strongest first
        (11, k["skip_connect"]): 2.5, (13, k["sep_conv_3x3"]): 2.0, (9, k["none"]): 8.0,  # node 5
    })
    reduce = torch.zeros(14, 8)  # all ties: first edges, first non-'none' op (reference tie-break)
    g = argmax_genotype(normal, reduce)
    assert g.normal == [("sep_conv_3x3", 0), ("skip_connect", 1),
                        ("dil_conv_5x5", 1), ("avg_pool_3x3", 2),
                        ("dil_conv_3x3", 3), ("sep_conv_5x5", 0),
                        ("skip_connect", 2), ("sep_conv_3x3", 4)]
    assert g.reduce == [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4
    assert g.normal_concat == g.reduce_concat == [2, 3, 4, 5]


def test_argmax_recovers_a_planted_genotype():
    # alphas that favour exactly DARTS_V2's edges and ops must give DARTS_V2 back
    for g in (DARTS_V1, DARTS_V2):
        rows = []
        for pairs in (g.normal, g.reduce):
            a = torch.zeros(14, 8)
            for k, (op, src) in enumerate(pairs):
                node = k // 2
                edge = sum(2 + i for i in range(node)) + src
                a[edge, DARTS_SPACE.ops.index(op)] = 5.0 - 0.1 * (k % 2)  # the first listed is stronger
            rows.append(a)
        assert argmax_genotype(*rows) == g
