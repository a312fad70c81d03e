"""Benchmark one climb step's candidates trained one at a time against N at once (Ray).

One step as the climber makes it (the parent and n_neigh - 1 children of n_nm random morphisms,
each trained `--epochs` epochs, the paper schedule's single rung), run by:

- local:       LocalExecutor, in this process, one after another, all cores for torch (the default);
- local, T threads: the same with T = cores / N torch threads, as each Ray task below has;
- ray x1:      RayExecutor, one task at a time with T threads: the same work as "local, T threads",
               so (ray x1 - local T) / candidates is Ray's overhead per candidate (shipping,
               scheduling, rebuilding the child, sending the trained net back);
- ray xN:      N tasks at once, T threads each (N = the cores; --concurrent N): ray x1 / ray xN is
               what running N candidates at once gains;
- on CUDA also: local on the GPU, ray with one candidate a GPU, N candidates sharing one GPU
  (--gpu-share, fractional GPUs), and one candidate on each GPU when there are several.

Every configuration first runs the step once untimed, so that start-up (a Ray worker is a
Python process importing torch; a process's first training pays one-off costs) is not counted;
for Ray it is printed apart ("cold start": starting the executor and that first step). Each is
then timed --repeat times, the best kept. All timings come from this one run; the last line is
one JSON object with the ratios.

    python experiments/bench_parallel.py [--candidates 4] [--epochs 2] [--widths 32,64,128] [--concurrent N]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time

import torch

from morphisms import random_morphisms
from nash.search import ClimbConfig, load_data
from nash.search.kit import child_seed, make_start_net
from nash.search.executors import LocalExecutor
from nash.search.jobs import ChildOrigin, TrainJob, TrainSettings


def step_jobs(parent, data, args, calib):
    """The step's jobs as HillClimber._step makes them for step 1 (fresh copies each call)."""
    jobs = [TrainJob(0, copy.deepcopy(parent), args.epochs, (0.0, 1.0), child_seed(0, 1, 0) + 7, required=True,
                     origin=ChildOrigin(parent, 0, 0, None, []))]
    for j in range(1, args.candidates):
        seed = child_seed(0, 1, j)
        child, moves = random_morphisms(parent, args.n_nm, rng=seed, calibrate=calib)
        jobs.append(TrainJob(j, child, args.epochs, (0.0, 1.0), seed + 7, origin=ChildOrigin(parent, args.n_nm, seed,
                                                                                                 calib, moves)))
    return jobs


def timed(executor, parent, data, settings, args, calib):
    """The best of --repeat maps of the step (a shared machine's noise only ever adds time)."""
    best = None
    for _ in range(max(1, args.repeat)):
        jobs = step_jobs(parent, data, args, calib)
        t = time.perf_counter()
        outs = executor.map(jobs, (data, settings))
        t = time.perf_counter() - t
        best = (t, outs) if best is None or t < best[0] else best
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--candidates", type=int, default=4, help="n_neigh: the parent and candidates-1 children")
    ap.add_argument("--n-nm", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--concurrent", type=int, default=None, help="N for ray xN on the CPU (default: the cores)")
    ap.add_argument("--gpu-share", type=int, default=4, help="candidates sharing one GPU")
    ap.add_argument("--repeat", type=int, default=2, help="time each configuration this often, keep the best")
    args = ap.parse_args()

    from nash.search.ray_executor import RayExecutor

    torch.set_flush_denormal(True)  # as the nash CLI and the Ray workers do
    cores = len(os.sched_getaffinity(0))
    n = args.concurrent or cores
    cfg = ClimbConfig(data=args.data, data_dir=args.data_dir, subset=args.subset, device="cpu",
                      widths=tuple(int(w) for w in args.widths.split(",")))
    data = load_data(cfg)
    settings = TrainSettings(0.05, 0.0, 128, data.augment)
    parent = make_start_net(cfg, data)
    calib = data.train_x[:128]
    print(f"{args.data}: {data.train_x.shape[0]} training images, {args.candidates} candidates x {args.epochs} "
          f"epochs, {cores} cores, torch {torch.__version__}")
    rows, res = [], {"cores": cores, "candidates": args.candidates, "epochs": args.epochs, "concurrent": n}

    def row(name, seconds, outs, ref=None, cold=None):
        agree = "" if ref is None else (" same scores" if all(abs(a.val_acc - b.val_acc) < 1e-6 for a, b in
                                                               zip(outs, ref)) else " SCORES DIFFER")
        rows.append(name)
        print(f"  {name:<34} {seconds:7.2f} s  {seconds / len(outs):6.2f} s/candidate"
              + (f"  (cold start {cold:.1f} s)" if cold is not None else "") + agree)

    threads = max(1, cores // n)
    warm = copy.copy(args)
    warm.repeat = 1
    timed(LocalExecutor(), parent, data, settings, warm, calib)  # warm-up: first-call costs
    t_local, ref = timed(LocalExecutor(), parent, data, settings, args, calib)
    row(f"local, {torch.get_num_threads()} thread(s), 1 at a time", t_local, ref)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    t_local_t, _ = timed(LocalExecutor(), parent, data, settings, args, calib)
    row(f"local, {threads} thread(s), 1 at a time", t_local_t, ref)
    torch.set_num_threads(default_threads)

    def ray_config(name, on=(parent, data, calib, ref), **kw):
        t0 = time.perf_counter()
        ex = RayExecutor(**kw)
        net, d, c, r = on
        timed(ex, net, d, settings, warm, c)  # start the workers, train once in each: not counted
        cold = time.perf_counter() - t0
        t, outs = timed(ex, net, d, settings, args, c)
        row(f"{name}, {ex.parallelism} at a time", t, outs, r, cold)
        return ex, t

    # the first executor starts the local Ray (as many CPUs as cores), the rest join it;
    # ray x1: a task asks for all cores' worth of CPUs, so one runs at a time, but trains with T threads
    owner, t_ray1 = ray_config(f"ray x1, {threads} thread(s)", gpus_per_candidate=0, cpus_per_candidate=cores,
                               threads=threads)
    try:
        _, t_rayn = ray_config(f"ray x{n}, {threads} thread(s)", gpus_per_candidate=0, cpus_per_candidate=threads)
        res.update(threads=threads, local_s=round(t_local, 3), local_T_s=round(t_local_t, 3),
                   ray_x1_s=round(t_ray1, 3), ray_xN_s=round(t_rayn, 3),
                   speedup_N_vs_1=round(t_ray1 / t_rayn, 3), speedup_N_vs_local=round(t_local / t_rayn, 3),
                   ray_overhead_per_candidate_s=round((t_ray1 - t_local_t) / args.candidates, 3),
                   ray_x1_vs_local_T=round(t_ray1 / t_local_t, 3))
        if torch.cuda.is_available():
            gpus = torch.cuda.device_count()
            gdata = load_data(dataclasses.replace(cfg, device="cuda"))
            gparent = copy.deepcopy(parent).cuda()
            gcalib = gdata.train_x[:128]
            timed(LocalExecutor(), gparent, gdata, settings, warm, gcalib)
            t_glocal, gref = timed(LocalExecutor(), gparent, gdata, settings, args, gcalib)
            row("local on cuda", t_glocal, gref)
            on = (gparent, gdata, gcalib, gref)
            _, t_g1 = ray_config("ray, 1 GPU a candidate", on, gpus_per_candidate=1, cpus_per_candidate=1)
            share = args.gpu_share
            _, t_gs = ray_config(f"ray, {share} candidates a GPU", on, gpus_per_candidate=1 / share,
                                 cpus_per_candidate=max(1, cores // (share * gpus)))
            res.update(gpus=gpus, cuda_local_s=round(t_glocal, 3), cuda_ray_1gpu_s=round(t_g1, 3),
                       cuda_ray_shared_s=round(t_gs, 3), gpu_share=share,
                       speedup_shared_vs_1gpu=round(t_g1 / t_gs, 3),
                       speedup_shared_vs_local=round(t_glocal / t_gs, 3))
            if gpus > 1:
                res["speedup_all_gpus_vs_local"] = round(t_glocal / t_g1, 3)  # x1 spread over every GPU
    finally:
        owner.close()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
