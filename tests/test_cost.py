"""What a network costs: counts, the architecture's fingerprint, measured latency and its cache."""
import io

import pytest
import torch

import morphisms.cost as cost
from morphisms import LatencyCache, architecture_fingerprint, costs, measure_latency, start_net, widen


def test_costs_and_fingerprint_follow_the_architecture_not_the_weights():
    a = start_net(1, 10, (4, 8), 8)
    torch.manual_seed(1)
    b = start_net(1, 10, (4, 8), 8)  # other weights, same graph
    wide = widen(a, "conv1", 2.0)
    assert costs(a) == {"params": a.num_params(), "macs": a.macs()}
    assert architecture_fingerprint(a) == architecture_fingerprint(b)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert architecture_fingerprint(wide) != architecture_fingerprint(a)
    assert costs(wide)["params"] > costs(a)["params"]


def test_a_big_network_measures_slower_than_a_tiny_one():
    tiny = start_net(1, 10, (4,), 8)
    big = start_net(1, 10, (64, 128, 128), 32)
    assert big.macs() > 1000 * tiny.macs()  # a ratio no noisy machine hides
    before = torch.get_num_threads()
    t_tiny = measure_latency(tiny, "cpu", batch_size=2, threads=1, warmup=2, repeats=5)
    t_big = measure_latency(big, "cpu", batch_size=2, threads=1, warmup=2, repeats=5)
    assert 0 < t_tiny and t_big > 3 * t_tiny, (t_tiny, t_big)
    assert torch.get_num_threads() == before  # the thread count is the caller's again
    big.train()
    measure_latency(big, "cpu", repeats=1, warmup=0)
    assert big.training  # measured on a copy: the network's mode is left as it was


def test_latency_is_measured_once_per_architecture_device_batch_and_threads(monkeypatch):
    calls = []

    def fake(net, device="cpu", batch_size=1, threads=None, **kw):
        calls.append((net.macs(), str(device), batch_size, threads))
        return 0.5 + len(calls)  # a new figure each time: a second measurement would show

    monkeypatch.setattr(cost, "measure_latency", fake)
    a = start_net(1, 10, (4, 8), 8)
    torch.manual_seed(3)
    twin = start_net(1, 10, (4, 8), 8)
    wide = start_net(1, 10, (8, 8), 8)
    cache = LatencyCache()
    first = cache.latency(a, "cpu", 1, threads=1)
    assert cache.latency(a, "cpu", 1, threads=1) == first and a.latency_ms("cpu", 1, 1, cache=cache) == first
    assert cache.latency(twin, "cpu", 1, threads=1) == first  # other weights, same architecture
    assert len(calls) == 1
    # another batch size, thread count or architecture is another figure
    others = [cache.latency(a, "cpu", 4, threads=1), cache.latency(a, "cpu", 1, threads=2),
              cache.latency(wide, "cpu", 1, threads=1)]
    assert first not in others and len(calls) == len(cache) == 4

    # through a checkpoint-like dict (torch.save of plain data, loaded weights-only): the same
    # figures, and nothing measured again
    buf = io.BytesIO()
    torch.save({"state": {"latency": cache.to_dict()}}, buf)
    buf.seek(0)
    restored = LatencyCache.from_dict(torch.load(buf, weights_only=True)["state"]["latency"])
    monkeypatch.setattr(cost, "measure_latency", lambda *a, **k: pytest.fail("measured again after a restore"))
    assert restored.to_dict() == cache.to_dict()
    assert restored.latency(twin, "cpu", 1, threads=1) == first
    assert restored.latency(a, "cpu", 4, threads=1) == others[0]
    # a dict handed in is used, not copied: what is measured into it lands in the caller's state
    state = {}
    monkeypatch.setattr(cost, "measure_latency", lambda *a, **k: 7.0)
    LatencyCache(state.setdefault("latency", {})).latency(a, "cpu", 1, threads=1)
    assert list(state["latency"].values()) == [7.0]


def test_measure_latency_refuses_nonsense_arguments():
    with pytest.raises(ValueError):
        measure_latency(start_net(1, 10, (4,), 8), batch_size=0)


@pytest.mark.cuda
def test_latency_on_cuda_leaves_the_network_where_it_was():
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    tiny, big = start_net(1, 10, (4,), 8), start_net(1, 10, (128, 256, 256), 32)
    t_tiny = measure_latency(tiny, "cuda", batch_size=64, repeats=5)
    t_big = measure_latency(big, "cuda", batch_size=64, repeats=5)
    assert t_big > 2 * t_tiny, (t_tiny, t_big)
    assert next(big.parameters()).device.type == "cpu"
