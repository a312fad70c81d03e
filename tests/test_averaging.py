"""Scoring on averaged weights (nash/averaging.py): the mean is the mean of the snapshots taken at
the planned points, BatchNorm statistics are those of the averaged weights, the network that
trains on is untouched, and a climb's rung candidates are scored this way."""
import copy

import pytest
import torch
from torch import nn

from morphisms import start_net
from nash.averaging import SnapshotAverage, recompute_bn
from nash.data import DataSplits
from nash.search.jobs import TrainJob, TrainSettings, train_candidate
from nash.train import evaluate, sgdr_train

# fp32 sums of at most 5 snapshots of O(1) weights, then a division: a few ulps (fp32 eps 1.2e-7)
ATOL, RTOL = 1e-6, 1e-5


def data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return x, y


def toy_splits(x, y):
    return DataSplits("toy", x, y, x[:64], y[:64], x[:64], y[:64], 1, 2, (8, 8), (0.0,), (1.0,), None)


def test_the_average_is_the_mean_of_the_snapshots_at_evenly_spaced_steps():
    torch.manual_seed(0)
    net = start_net(1, 2, widths=(4, 8), input_size=8)
    x, y = data()
    avg = SnapshotAverage(net, 4)
    seen = {}

    def on_step(step, total):
        avg(step, total)
        seen[step] = [p.detach().clone() for p in net.parameters()]

    sgdr_train(net, x, y, 2, batch_size=32, seed=1, on_step=on_step)  # 16 optimizer steps
    assert avg.points == {4, 8, 12, 16} and avg.count == 4
    scored = avg.network(x)
    assert scored is not net
    for i, (p, last) in enumerate(zip(scored.parameters(), net.parameters())):
        want = sum(seen[s][i] for s in (4, 8, 12, 16)) / 4
        torch.testing.assert_close(p.detach(), want, atol=ATOL, rtol=RTOL)
        assert torch.equal(last.detach(), seen[16][i])  # the trained network keeps its last iterate
    assert not any(torch.equal(p, q) for p, q in zip(scored.parameters(), net.parameters()) if p.numel() > 1)


def test_recomputed_bn_statistics_are_the_batch_statistics_of_the_averaged_weights():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3)
    net = nn.Sequential(conv, bn, nn.ReLU())
    bn.running_mean.fill_(5.0)  # stale statistics, as a slice's last iterate would leave
    x, _ = data(600)
    recompute_bn(net, x, batch=256)
    with torch.no_grad():
        batches = [conv(x[i:i + 256]) for i in range(0, 600, 256)]
    # the plain mean over the batches of each batch's statistics (as torch's SWA update_bn), not
    # a moving average that would weigh the last batches most and keep some of the stale 5.0
    want_mean = sum(h.mean(dim=(0, 2, 3)) for h in batches) / len(batches)
    want_var = sum(h.var(dim=(0, 2, 3)) for h in batches) / len(batches)  # BN keeps the unbiased one
    torch.testing.assert_close(bn.running_mean, want_mean, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(bn.running_var, want_var, atol=ATOL, rtol=RTOL)
    net.eval()
    recompute_bn(net, x)
    assert not net.training


def toy_candidate():
    """(net, x, y, shared) of a tiny candidate on CPU tensors: the bit-for-bit checks below compare
    the same CPU kernels on the same inputs, in one process."""
    torch.manual_seed(0)
    net = start_net(1, 2, widths=(4, 8), input_size=8)
    x, y = data()
    return net, x, y, (toy_splits(x, y), TrainSettings(0.05, 0.0, 32, None))


def test_one_snapshot_scores_the_last_iterate_bit_for_bit():
    net, x, y, (splits, settings) = toy_candidate()
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    out = train_candidate(TrainJob(0, a, 2, (0.2, 0.4), 3, average=1), (splits, settings))
    sgdr_train(b, x, y, 2, 0.05, 0.0, batch_size=32, seed=3, cycle=(0.2, 0.4))
    assert out.val_acc == evaluate(b, x[:64], y[:64])[0] and "averaged" not in out.extra


def test_averaging_changes_the_score_but_not_the_network_handed_back():
    net, _, _, (splits, settings) = toy_candidate()
    one = train_candidate(TrainJob(0, copy.deepcopy(net), 2, (0.2, 0.4), 3, average=1), (splits, settings))
    five = train_candidate(TrainJob(0, copy.deepcopy(net), 2, (0.2, 0.4), 3, average=5), (splits, settings))
    assert five.extra["averaged"] == 5
    # the same batches and steps: the network that trains on is the same, bit for bit
    assert all(torch.equal(p, q) for p, q in zip(one.net.state_dict().values(), five.net.state_dict().values()))
    assert five.val_loss != one.val_loss


@pytest.mark.parametrize("snapshots", [1, 3])
def test_a_climbs_rung_candidates_are_scored_on_the_average(tmp_path, snapshots):
    from nash.cli import main
    from click.testing import CliRunner
    import json
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["climb", "--steps", "1", "--n-neigh", "2", "--n-nm", "1", "--epoch-neigh", "2",
                                    "--pretrain-epochs", "1", "--epoch-final", "1", "--widths", "8,8",
                                    "--subset", "600", "--seed", "5", "--device", "cpu", "--quiet",
                                    "--score-snapshots", str(snapshots), "--out", str(out)])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    children = [e for e in events if e.get("event") == "child"]
    assert children and all(e["averaged"] == snapshots for e in children)
