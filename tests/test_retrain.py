"""retrain: a climb's final architecture from fresh weights, trained for the whole budget."""
import subprocess
import sys

import torch

from morphisms import Network, random_morphisms, start_net
from nash.data import load_dataset
from nash.search import RetrainConfig, run_searcher
from nash.search.retrain import fresh_network


def grown(tmp_path):
    net = start_net(1, 10, (8, 16), 8)
    child, _ = random_morphisms(net, 4, rng=3)
    child.save(tmp_path / "climbed")
    return child


def test_retrain_trains_the_climbs_architecture_from_fresh_weights(tmp_path):
    climbed = grown(tmp_path)
    data = load_dataset("digits", subset=300, device="cpu")
    cfg = RetrainConfig(data="digits", subset=300, device="cpu", widths=(8, 16), start=str(tmp_path / "climbed"),
                        epochs=2)
    fresh = fresh_network(cfg, data)
    assert fresh.to_json() == climbed.to_json()  # the same architecture
    old, new = climbed.state_dict(), fresh.state_dict()
    weights = [k for k in old if k.endswith("weight") and old[k].dim() > 1]
    assert weights and all(not torch.equal(old[k], new[k]) for k in weights)  # none of its weights
    # drawn from the seed: the same seed, the same weights; another seed, others
    again = fresh_network(cfg, data).state_dict()
    assert all(torch.equal(new[k], again[k]) for k in new)
    other = fresh_network(RetrainConfig(**{**cfg.__dict__, "seed": 1}), data).state_dict()
    assert any(not torch.equal(new[k], other[k]) for k in weights)
    res = run_searcher("retrain", cfg, out=tmp_path / "run")
    assert res["method"] == "retrain" and res["epochs"] == 2
    assert Network.load(tmp_path / "run" / "best").to_json() == climbed.to_json()


def test_compare_refuses_retrain_without_the_climb_it_retrains(tmp_path):
    # (tests/test_searchers.py::test_compare_end_to_end runs it after the climb of its seed)
    p = subprocess.run([sys.executable, "-m", "nash", "compare", "--methods", "none,retrain", "--budget", "10s",
                        "--data", "digits", "--subset", "300", "--out", str(tmp_path / "alone")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "nash" in p.stderr, p.stderr
    assert not (tmp_path / "alone").exists()
