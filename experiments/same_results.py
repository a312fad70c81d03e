"""Same seed, same results: run `nash`, `random`, `none` and `darts` (or the DARTS variants)
without a budget at tiny settings on two versions of the code and diff their run directories,
times aside.

    python experiments/same_results.py                   # HEAD against the working tree
    python experiments/same_results.py BASE [OTHER]      # two commits (OTHER "worktree": the working tree)
    python experiments/same_results.py b889264 --methods darts,darts-variants

Each version runs from its own copy under /tmp (a `git worktree` for a commit, a copy of the
tracked and untracked files for the working tree), with PYTHONPATH and the working directory
there, so that its code runs (checked: each run prints where `nash` was imported from). One
thread (OMP_NUM_THREADS=1) for both: the same arithmetic, and no oversubscription on a shared
machine. Compared per searcher:
  events.jsonl   every event, in order, time fields removed (time, elapsed, wall, *seconds*)
  results.json   the same, the curve's times removed
  best/graph.json  byte for byte
  best/weights.pt  every tensor torch.equal
  genotype.txt   byte for byte (darts)
Bitwise results differ between CPUs: run both versions on the same machine, as here. Prints a
verdict per file; the last line is a JSON object {"identical": bool, ...}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--data", "digits", "--subset", "300", "--device", "cpu", "--quiet"]
# the CLI for the searchers that have a command; random and none only run on a budget from
# `nash compare`, so they run through run_searcher, the function both commands call
CLI = {
    "nash": ["climb", *COMMON, "--steps", "1", "--n-neigh", "2", "--n-nm", "2", "--epoch-neigh", "1",
             "--epoch-final", "1", "--pretrain-epochs", "1", "--widths", "8,16"],
    "darts": ["darts", *COMMON, "--epochs", "1", "--channels", "4", "--layers", "2", "--batch-size", "32",
              "--train-epochs", "1", "--train-channels", "4", "--train-layers", "2", "--train-batch-size", "64"],
}
API = {
    "random": dict(data="digits", subset=300, device="cpu", widths=[8, 16], n_neigh=2, n_nm=2, candidates=2,
                   epoch_neigh=1, epoch_final=1),
    "none": dict(data="digits", subset=300, device="cpu", widths=[8, 16], epochs=2),
}
# the DARTS variants, each searcher by its registry name at the darts command's tiny settings
TINY_DARTS = dict(data="digits", subset=300, device="cpu", epochs=1, channels=4, layers=2, batch_size=32,
                  train_epochs=1, train_channels=4, train_layers=2, train_batch_size=64)
VARIANTS = ("sdarts-rs", "sdarts-adv", "darts-pt", "milenas", "nasp")
API.update({name: dict(TINY_DARTS, **({"pt_tune_epochs": 1} if name == "darts-pt" else {})) for name in VARIANTS})
ALL = ("nash", "random", "none", "darts", *VARIANTS)
DRIVER = """
import json, sys
import nash
from nash.search import run_searcher, searcher
print("nash from", nash.__file__, file=sys.stderr)
name, kw, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
run_searcher(name, searcher(name).make(**kw), out=out)
"""


def is_time(key: str) -> bool:
    return key in ("time", "elapsed", "wall") or "seconds" in key


def untimed(obj):
    if isinstance(obj, dict):
        return {k: (untimed([a for _, a in v]) if k == "curve" else untimed(v)) for k, v in obj.items()
                if not is_time(k)}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj


def checkout(spec: str, root: Path) -> tuple[Path, str]:
    """(a copy of the code at `spec`, its description)."""
    dest = root / spec.replace("/", "_")
    if spec == "worktree":
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for f in filter(None, files):
            if (REPO / f).is_file():
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, dest / f)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return dest, f"working tree (on {head.stdout.strip()})"
    commit = subprocess.run(["git", "rev-parse", spec], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    subprocess.run(["git", "worktree", "add", "--detach", str(dest), commit], cwd=REPO, check=True,
                   capture_output=True)
    return dest, commit[:12]


def run_all(code: Path, out: Path, methods) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    logs = {}
    for name in methods:
        run_dir = out / name
        if name in CLI:
            cmd = [sys.executable, "-c", "import sys, nash; print('nash from', nash.__file__, file=sys.stderr); "
                   "from nash.cli import main; main()", *CLI[name], "--out", str(run_dir)]
        else:
            cmd = [sys.executable, "-c", DRIVER, name, json.dumps(API[name]), str(run_dir)]
        p = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=1800)
        where = next((l.split("nash from", 1)[1].strip() for l in p.stderr.splitlines() if "nash from" in l), "?")
        if p.returncode != 0 or not where.startswith(str(code)):
            raise SystemExit(f"{name} at {code}: rc {p.returncode}, nash from {where}\n{p.stderr[-3000:]}")
        logs[name] = where
    return logs


def compare(a: Path, b: Path, methods) -> dict:
    verdicts = {}
    for name in methods:
        ra, rb = a / name, b / name

        def events(d):
            return [untimed(json.loads(l)) for l in (d / "events.jsonl").read_text().splitlines()]
        ea, eb = events(ra), events(rb)
        first = next((i for i, (x, y) in enumerate(zip(ea, eb)) if x != y), None)
        same = ea == eb
        verdicts[f"{name}/events.jsonl"] = "same" if same else (
            f"differ: {len(ea)} vs {len(eb)} events" + (f", first at {first}: {ea[first]['event']}" if first is not None
                                                        else ""))
        ja = untimed(json.loads((ra / "results.json").read_text()))
        jb = untimed(json.loads((rb / "results.json").read_text()))
        verdicts[f"{name}/results.json"] = "same" if ja == jb else \
            "differ: " + ", ".join(k for k in sorted(set(ja) | set(jb)) if ja.get(k) != jb.get(k))
        ga, gb = (ra / "best" / "graph.json").read_bytes(), (rb / "best" / "graph.json").read_bytes()
        verdicts[f"{name}/best/graph.json"] = "same" if ga == gb else "differ"
        wa = torch.load(ra / "best" / "weights.pt", weights_only=True)
        wb = torch.load(rb / "best" / "weights.pt", weights_only=True)
        bad = [k for k in wa if k not in wb or not torch.equal(wa[k], wb[k])] + [k for k in wb if k not in wa]
        verdicts[f"{name}/best/weights.pt"] = f"same ({len(wa)} tensors)" if not bad else \
            f"differ in {len(bad)} tensors, e.g. {bad[0]}"
        if (ra / "genotype.txt").exists() or (rb / "genotype.txt").exists():
            same_g = (ra / "genotype.txt").exists() and (rb / "genotype.txt").exists() and \
                (ra / "genotype.txt").read_bytes() == (rb / "genotype.txt").read_bytes()
            verdicts[f"{name}/genotype.txt"] = "same" if same_g else "differ"
    return verdicts


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", nargs="?", default="HEAD", help="a commit (default HEAD)")
    p.add_argument("other", nargs="?", default="worktree", help="a commit, or worktree (default): the working tree")
    p.add_argument("--methods", default="nash,random,none,darts",
                   help=f"comma-separated, of {', '.join(ALL)}; darts-variants: all DARTS variants "
                        f"(default nash,random,none,darts)")
    args = p.parse_args(argv)
    methods = []
    for m in args.methods.split(","):
        for name in (VARIANTS if m == "darts-variants" else (m,)):
            if name not in ALL:
                p.error(f"unknown method {name!r} (known: {', '.join(ALL)}, darts-variants)")
            methods.append(name)
    return [args.base, args.other], methods


def main(argv):
    specs, methods = parse(argv)
    root = Path(tempfile.mkdtemp(prefix="same-results-"))
    made = []
    try:
        results = {}
        for spec in specs:
            code, desc = checkout(spec, root)
            if spec != "worktree":
                made.append(code)
            out = root / f"runs-{len(results)}"
            print(f"{spec}: {desc}, code at {code}", flush=True)
            run_all(code, out, methods)
            results[spec] = (desc, out)
        (da, a), (db, b) = results[specs[0]], results[specs[1]]
        verdicts = compare(a, b, methods)
        for f, v in verdicts.items():
            print(f"{f:28s} {v}")
        identical = all(v.startswith("same") for v in verdicts.values())
        print(json.dumps({"identical": identical, "a": da, "b": db, "files": len(verdicts),
                          "differ": [f for f, v in verdicts.items() if not v.startswith("same")]}))
        return 0 if identical else 1
    finally:
        for code in made:
            subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=REPO, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
