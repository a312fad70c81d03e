"""random_morphisms' cap on growth (max_macs): children stay within it and keep the function."""
import torch

from morphisms import random_morphisms, start_net


def test_max_macs_caps_every_child_and_keeps_the_function():
    net = start_net(1, 10, (16, 32, 64), (28, 28)).eval()
    x = torch.randn(4, 1, 28, 28)
    uncapped = [random_morphisms(net, 5, rng=s)[0].macs() for s in range(6)]
    assert max(uncapped) > 2 * net.macs()  # without the cap, 5 morphisms often more than double the cost
    for s in range(6):
        child, applied = random_morphisms(net, 5, rng=s, max_macs=2 * net.macs())
        assert child.macs() <= 2 * net.macs()
        assert len(applied) == 5  # cheap moves (BN inserts, skips) still fit under the cap: not cut short
        assert torch.allclose(child.eval()(x), net(x), atol=1e-5)
    # a cap nothing fits under leaves the parent as it is
    child, applied = random_morphisms(net, 3, rng=0, max_macs=net.macs() - 1)
    assert applied == [] and child.macs() == net.macs()


def test_capacity_moves_fit_the_caps_and_a_first_move_leads_the_child():
    from morphisms import CAPACITY, MorphismError, Move, capacity_moves
    import pytest
    net = start_net(1, 10, (16, 32, 64), (28, 28)).eval()
    x = torch.randn(4, 1, 28, 28)
    cap = int(1.5 * net.macs())
    options = capacity_moves(net, max_macs=cap)
    free = capacity_moves(net)
    assert options and len(options) < len(free)  # the cap binds: a full-width deepen costs ~2x
    for move, params, macs in options:
        assert move.kind in CAPACITY and params > 0 and 0 < macs <= cap - net.macs()
        child, applied = random_morphisms(net, 4, rng=7, max_macs=cap, first=move)
        assert applied[0] == move and len(applied) == 4 and child.macs() <= cap
        assert torch.allclose(child.eval()(x), net(x), atol=1e-5)
    # the same (parent, n, seed, first): the same child; a first over the cap or absent is an error
    again = random_morphisms(net, 4, rng=7, max_macs=cap, first=options[0][0])
    assert again[1] == random_morphisms(net, 4, rng=7, max_macs=cap, first=options[0][0])[1]
    over = next(m for m, _, macs in free if net.macs() + macs > cap)
    with pytest.raises(MorphismError):
        random_morphisms(net, 4, rng=7, max_macs=cap, first=over)
    with pytest.raises(MorphismError):
        random_morphisms(net, 4, rng=7, first=Move.of("deepen", after="no_such_node"))


def test_a_budget_step_compares_different_capacity_moves(tmp_path):
    # under the budget schedule each child starts from its own capacity move (drawn without
    # replacement); --no-capacity-first gives the paper's n_nm random morphisms
    import json

    from click.testing import CliRunner

    from morphisms import CAPACITY
    from nash.cli import main
    args = ["climb", "--steps", "1", "--n-neigh", "5", "--n-nm", "3", "--widths", "8,16", "--subset", "300",
            "--epoch-neigh", "1", "--epoch-final", "1", "--pretrain-epochs", "1", "--seed", "3", "--quiet", "--device", "cpu"]

    def firsts(name, *extra):
        r = CliRunner().invoke(main, [*args, *extra, "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        kids = [json.loads(line) for line in (tmp_path / name / "events.jsonl").read_text().splitlines()]
        kids = [e for e in kids if e["event"] == "child" and e["rung"] == 0 and not e["is_parent"]]
        assert len(kids) == 4
        return [(m := e["morphisms"][0])["kind"] + str(sorted(m.items())) for e in kids]

    made = firsts("capacity")
    # this (8, 16) net has three capacity moves under the 2x cap: three children, three places;
    # the fourth child starts the cycle again
    assert all(f.startswith(CAPACITY) for f in made) and len(set(made[:3])) == 3 and made[3] == made[0]
    assert firsts("again") == made  # seeded
    plain = firsts("plain", "--no-capacity-first")
    assert plain != made
