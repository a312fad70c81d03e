"""The device-independent half of the CUDA fixes, on the CPU: the CPU's random streams are the
ones the code drew before draws moved onto the device, the device-side replacements of host
computations choose what the host did, a loaded network lives where map_location says, and the
run's device reaches Ray's tasks. tests/test_cuda.py holds what only a GPU can show."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.fx

from morphisms import Network, random_morphisms, start_net
from nash.data import Augment, iterate_batches, load_dataset, make_generator, mixup


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", subset=200, seed=0, device="cpu")


# ------------------------------------------------------------------ CPU streams, as they were


def _old_augment(x, aug, g):
    """augment_batch's draws as the code made them with a CPU generator before the device path."""
    n, c, h, w = x.shape
    p = aug.pad
    dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    top = torch.randint(0, h - aug.cutout + 1, (n,), generator=g)
    left = torch.randint(0, w - aug.cutout + 1, (n,), generator=g)
    return dy, dx, flip, top, left


def test_cpu_draws_are_the_streams_the_old_code_drew(digits):
    # the old code: torch.Generator().manual_seed(seed), every draw on it, moved to the data
    assert torch.equal(make_generator(7, "cpu").get_state(), torch.Generator().manual_seed(7).get_state())
    assert make_generator(7, torch.device("cpu")).device.type == "cpu"
    aug = Augment(pad=1, flip=True, cutout=3)
    x, y = digits.train_x, digits.train_y
    new, old = make_generator(3), torch.Generator().manual_seed(3)
    batches = list(iterate_batches(x, y, 64, shuffle=True, generator=new, aug=aug, drop_last=True))
    order = torch.randperm(len(x), generator=old)
    for i, (xb, yb) in enumerate(batches):
        idx = order[i * 64:(i + 1) * 64]
        assert torch.equal(yb, y[idx])
        dy, dx, flip, top, left = _old_augment(x[idx], aug, old)
        # the shifted, flipped, cut-out images from those draws
        padded = torch.nn.functional.pad(x[idx], (1, 1, 1, 1))
        want = torch.stack([padded[j, :, dy[j]:dy[j] + 8, dx[j]:dx[j] + 8] for j in range(len(idx))])
        want = torch.where(flip[:, None, None, None], want.flip(3), want)
        for j in range(len(idx)):
            want[j, :, top[j]:top[j] + 3, left[j]:left[j] + 3] = 0
        assert torch.equal(xb, want)
    # mixup: a permutation, then numpy's Beta seeded from one draw
    xm, ya, yb2, lam = mixup(x[:32], y[:32], 0.4, new)
    perm = torch.randperm(32, generator=old)
    seed = int(torch.randint(2**62, (1,), generator=old))
    want_lam = float(np.random.default_rng(seed).beta(0.4, 0.4))
    assert isinstance(lam, float) and lam == want_lam
    assert torch.equal(yb2, y[:32][perm]) and torch.equal(xm, want_lam * x[:32] + (1 - want_lam) * x[:32][perm])
    assert torch.equal(new.get_state(), old.get_state())  # nothing else was drawn


def test_smoother_noise_on_the_cpu_is_the_old_stream():
    from nash.darts.smoothing import RandomSmoothing
    w = torch.rand(14, 8)
    s = RandomSmoothing(seed=5)
    old = torch.Generator().manual_seed(5)
    for _ in range(3):
        want = (2 * torch.rand(w.shape, generator=old, dtype=w.dtype) - 1) * 0.3
        assert torch.equal(s.uniform(w, 0.3), want)
    assert s.generator.device.type == "cpu"


def test_a_run_resumed_on_another_device_type_continues_from_its_checkpoint():
    """A DARTS checkpoint holds its generators' states; a resume may change the device, and a
    CUDA generator's state (16 bytes) does not fit a CPU generator (5056) nor the other way."""
    from nash.darts.smoothing import RandomSmoothing
    from nash.data import set_generator_state
    saved = torch.Generator().manual_seed(3)
    g = torch.Generator()
    set_generator_state(g, saved.get_state())
    assert torch.equal(g.get_state(), saved.get_state())  # the same kind: restored exactly
    cuda_state = torch.arange(16, dtype=torch.uint8)  # the shape of a CUDA (Philox) generator's state
    a, b = torch.Generator(), torch.Generator()
    set_generator_state(a, cuda_state)
    set_generator_state(b, cuda_state.clone())
    assert torch.equal(a.get_state(), b.get_state())  # reseeded from the state: a function of the checkpoint
    assert not torch.equal(a.get_state(), torch.Generator().get_state())
    s = RandomSmoothing(seed=0)
    s.load_state_dict({"generator": cuda_state})
    assert s.uniform(torch.zeros(3, 4), 0.1).shape == (3, 4)


def test_the_device_beta_draw_is_a_beta_and_reproducible():
    from nash.data import _device_beta
    draws = torch.stack([_device_beta(1.0, g) for g in [torch.Generator().manual_seed(0)] for _ in range(2000)])
    assert draws.dim() == 1 and ((draws > 0) & (draws < 1)).all()
    # Beta(1, 1) is uniform: mean 1/2, variance 1/12; 2000 draws put the mean within 0.02 (3 sigma)
    assert abs(float(draws.mean()) - 0.5) < 0.02 and abs(float(draws.var()) - 1 / 12) < 0.01
    a = _device_beta(0.4, torch.Generator().manual_seed(1))
    assert a.shape == () and torch.equal(a, _device_beta(0.4, torch.Generator().manual_seed(1)))


def test_a_cpu_climb_draws_no_cuda_seed(digits, monkeypatch):
    """fork_rng(devices=[]) saves only the CPU generator: a torch.manual_seed inside it would
    reseed every GPU for good. The seeded inits seed the CPU generator only."""
    from nash.darts.search import build, search_config, train_genotype
    from nash.search import ClimbConfig
    from nash.search.kit import make_start_net
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)  # what the old code did: the same CPU init
        want = start_net(1, 10, (4, 8), digits.image_size).state_dict()
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    state = torch.get_rng_state()
    net = make_start_net(ClimbConfig(widths=(4, 8), seed=3), digits)
    assert net.state_dict().keys() == want.keys()
    assert all(torch.equal(net.state_dict()[k], want[k]) for k in want)
    build(search_config({"channels": 2, "layers": 1, "steps": 1, "multiplier": 1}), digits)
    train_genotype("DARTS_V2", digits, epochs=0, channels=2, layers=1, seed=1)
    assert calls == [] and torch.equal(torch.get_rng_state(), state)


# ------------------------------------------------------------------ host computations moved to the device


def test_argmax_mask_on_the_device_is_the_host_rule():
    from nash.darts.ops import DARTS_SPACE, NB201_SPACE
    from nash.darts.selection import _argmax_mask_on_device, argmax_mask
    g = torch.Generator().manual_seed(0)
    for space in (DARTS_SPACE, NB201_SPACE, DARTS_SPACE.with_steps(2)):
        shape = (space.num_edges, len(space.ops))
        for t in range(200):
            # ties on purpose: values from {0, 0.5, 1} half the time, and NASP's clipped 0.5 start
            w = torch.randint(0, 3, shape, generator=g).double() / 2 if t % 2 else torch.rand(shape, generator=g)
            if t == 0:
                w = torch.full(shape, 0.5)
            mask = _argmax_mask_on_device(w, space)
            assert torch.equal(mask, argmax_mask(w, space)) and mask.dtype == w.dtype


def test_decided_rows_live_with_the_alphas():
    from nash.darts.supernet import Supernet
    torch.manual_seed(0)
    net = Supernet(2, 10, 1, 1, steps=1, multiplier=1).double()
    net.fix_edge("normal", 0, torch.tensor([0.0, 1.0] + [0.0] * 6))  # a float32 CPU row, as PT makes it
    row = net.fixed_edges("normal")[0]
    assert row.dtype == torch.float64 and row.device == net.alphas_normal.device
    net.to("meta")
    net.fix_edge("normal", 1, torch.zeros(8))
    assert net.fixed_edges("normal")[1].device.type == "meta"  # where the alphas are, not the CPU


def test_skip_zero_reads_every_zero_pattern_in_one_copy():
    from nash.darts.supernet import _nonzero_lists
    ws = [torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]]), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])]
    assert _nonzero_lists(ws) == [(w != 0).tolist() for w in ws]


# ------------------------------------------------------------------ networks


def test_a_loaded_network_lives_where_map_location_says(tmp_path, tiny_net):
    tiny_net.save(tmp_path / "net")
    cpu = Network.load(tmp_path / "net")
    assert all(t.device.type == "cpu" for t in [*cpu.parameters(), *cpu.buffers()])
    meta = Network.load(tmp_path / "net", map_location="meta")  # a device that is not the CPU, here
    assert all(t.device.type == "meta" for t in [*meta.parameters(), *meta.buffers()])
    meta = Network.load(tmp_path / "net", map_location={"cpu": "meta"})  # torch.load's other forms too
    assert all(p.device.type == "meta" for p in meta.parameters())


def test_a_network_traces_with_torch_fx_and_computes_the_same(tiny_net):
    net, _ = random_morphisms(tiny_net, 6, rng=1)
    net.eval()
    traced = torch.fx.symbolic_trace(net)
    from morphisms.layers import global_avg_pool
    assert any(n.op == "call_function" and n.target is global_avg_pool for n in traced.graph.nodes)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(traced(x), net(x))  # the same modules and ops on the same inputs
    # in training, through the channels_last path the pool's gradient hook serves
    net.train().to(memory_format=torch.channels_last)
    traced = torch.fx.symbolic_trace(net)
    xc = x.contiguous(memory_format=torch.channels_last)
    for m in (net, traced):
        m.zero_grad()
    net(xc).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    traced(xc).square().sum().backward()
    for a, b in zip(grads, (p.grad for p in traced.parameters())):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ devices the user names


def test_a_gpu_the_machine_lacks_is_one_user_error(monkeypatch):
    from nash.errors import NashError
    from nash.search.contract import pick_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0") and pick_device("cuda") == torch.device("cuda")
    with pytest.raises(NashError, match=r"'cuda:7'.* 1 GPU\(s\), cuda:0 to cuda:0"):
        pick_device("cuda:7")


def test_precision_follows_the_gpu(monkeypatch):
    import nash.train as train
    assert train.precision_for(torch.device("cpu")) is None
    monkeypatch.setattr(train, "_native_bf16", lambda device: True)
    assert train.precision_for(torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(train, "_native_bf16", lambda device: False)  # V100, T4
    assert train.precision_for(torch.device("cuda:0")) == torch.float16


def test_fp16_training_scales_its_loss(digits, monkeypatch):
    """The fp16 fallback's path (autocast + GradScaler), run on the CPU: every step goes through
    the scaler, and the result is fp32's up to fp16 rounding."""
    import nash.train as train
    steps = []

    class Counting(torch.amp.GradScaler):
        def step(self, opt, *a, **kw):
            steps.append(self.get_scale())
            return super().step(opt, *a, **kw)

    def run():
        torch.manual_seed(0)
        net = start_net(1, 10, (4, 8), digits.image_size)
        return net, train.sgdr_train(net, digits.train_x, digits.train_y, 2, batch_size=64, grad_clip=5.0, seed=0)

    _, fp32 = run()
    monkeypatch.setattr(train, "precision_for", lambda device: torch.float16)
    monkeypatch.setattr(torch.amp, "GradScaler", Counting)
    net, fp16 = run()
    assert len(steps) == fp16.steps == fp32.steps > 0 and fp16.failed is None
    # fp16 keeps 11 bits: a loss near 2.3 agrees to well under 1e-2 after a few steps
    assert abs(fp16.train_loss - fp32.train_loss) < 1e-2
    acc, loss = train.evaluate(net, digits.val_x, digits.val_y)
    assert np.isfinite(loss)


# ------------------------------------------------------------------ Ray: the run's device reaches the tasks


def test_ray_tasks_ask_for_gpus_only_for_a_run_on_cuda():
    pytest.importorskip("ray")
    import ray
    from nash.search.ray_executor import task_options
    cpu = task_options(2, 0.0)
    assert cpu["num_gpus"] == 0 and cpu["num_cpus"] == 2 and "max_calls" not in cpu
    gpu = task_options(1, 0.25)
    assert gpu["num_gpus"] == 0.25 and gpu["max_calls"] == 1  # a fresh worker: its own CUDA context
    remote = ray.remote(**gpu)(lambda: None)
    assert remote._default_options["max_calls"] == 1 and remote._default_options["num_gpus"] == 0.25


def test_a_ray_task_of_a_cpu_run_trains_on_the_cpu(monkeypatch):
    pytest.importorskip("ray")
    import ray
    from nash.search import ray_executor
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert ray_executor.task_device("cpu") == torch.device("cpu")  # GPUs or not
    assert ray_executor.task_device("cuda") == torch.device("cuda", 0)  # its one visible GPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [2])
    assert ray_executor.task_device("cuda") == torch.device("cuda", 2)  # every GPU visible: its own id
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert ray_executor.task_device("cuda") == torch.device("cpu")


def _rebuild_job(digits):
    from nash.search.jobs import ChildOrigin, TrainJob, TrainSettings, net_fingerprint
    torch.manual_seed(0)
    parent = start_net(1, 10, (4, 8), digits.image_size)
    origin = ChildOrigin(parent, 1, 0, None, [])
    child, moves = random_morphisms(parent, 1, rng=0)
    origin.moves = list(moves)
    rebuild = {"parent": [parent], "n": 1, "seed": 0, "moves": list(moves), "max_macs": None, "calibrate": None,
               "on": "cpu", "fingerprint": net_fingerprint(child)}
    job = TrainJob(0, None, 1, (0.0, 1.0), seed=0)
    return job, rebuild, (digits, TrainSettings(0.05, 0.0, 64, None))


def test_a_ray_rebuild_that_fails_in_torch_is_the_tasks_error(digits, monkeypatch):
    """Only a mismatch makes the job go again with its network; a real error (out of memory)
    is raised as the task's own."""
    pytest.importorskip("ray")
    import ray
    from nash.search import jobs, ray_executor
    monkeypatch.setattr(ray_executor, "_cached", lambda kind, box, device, prepare: prepare(box[0]))
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    job, rebuild, (data, settings) = _rebuild_job(digits)
    opts = {"threads": 1, "build_threads": 1, "flush_denormal": True, "device": "cpu"}
    out = ray_executor.run_job(job, None, rebuild, [data], settings, opts)
    assert out.failed is None and out.net is not None  # rebuilt bit for bit and trained
    drew = dict(rebuild, moves=[])
    out = ray_executor.run_job(job, None, drew, [data], settings, opts)
    assert out.failed == ray_executor.REBUILT_DIFFERS  # other moves drawn: sent again with its net

    def oom(self):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(jobs.ChildOrigin, "build", oom)
    with pytest.raises(RuntimeError, match="out of memory"):
        ray_executor.run_job(job, None, rebuild, [data], settings, opts)
    assert torch.get_num_threads() == 1


def test_the_ray_executor_is_told_the_runs_device():
    pytest.importorskip("ray")
    from nash.errors import OptionError
    from nash.search.executors import LocalExecutor, make_executor
    from nash.search.ray_executor import RayExecutor, _device_type
    assert _device_type("cpu") == "cpu" and _device_type(torch.device("cuda", 1)) == "cuda"
    assert _device_type("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(OptionError, match="--gpus-per-candidate 0.5 with --device cpu"):
        RayExecutor(gpus_per_candidate=0.5, device="cpu")  # refused before Ray starts
    with pytest.raises(OptionError, match="unknown device"):
        make_executor("ray", device="nonsense")
    assert isinstance(make_executor("local", device="cpu"), LocalExecutor)  # the local executor takes a device too
