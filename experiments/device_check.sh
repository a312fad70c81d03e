#!/usr/bin/env bash
# The GPU path, on a CUDA machine, in under 5 minutes: tests/test_cuda.py (a tiny climb, a tiny
# DARTS search, the fast supernet against the plain one, morphisms preserving the function in
# fp32 and bf16, networks saved on one device and loaded on another, the draws and decisions kept
# on the GPU), then the three benchmarks at CIFAR size, each memory figure of bench_darts measured
# with its setup alone on the GPU. Every step runs under `timeout`; the limits add up to 250 s
# (275 s with the 5 s each may take to stop).
# Each benchmark's last line is a JSON object; all output goes to stdout and to $OUT (default:
# ./device-check) for a closing note to quote.
#
#     bash experiments/device_check.sh            # needs torch with CUDA and `pip install -e .[test]`
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device-check}"
mkdir -p "$OUT"
timeout -k 5 20 python - <<'PY' || { echo "device_check: no CUDA device visible to torch" >&2; exit 2; }
import torch, sys
assert torch.cuda.is_available()
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0),
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
status=0
step() {  # step NAME SECONDS COMMAND...: run under a time limit, keep its output, remember a failure, go on
    local name="$1" limit="$2"; shift 2
    echo "== $name (at most $limit s): $*"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo "== $name: stopped at its limit of $limit s"
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}
# only the cuda tests' module: `-m cuda tests/` would import every test module and its dev dependencies
step tests 90 python -m pytest -q -p no:cacheprovider tests/test_cuda.py
step bench_darts 40 python experiments/bench_darts.py --device cuda --sizes paper --steps 5 --rounds 2
step bench_train 60 python experiments/bench_train.py --device cuda --data random32 --epochs 2 --rounds 2 \
    --profile-steps 10
step bench_climb 40 python experiments/bench_climb.py --device cuda --data random32 --subset 5000 --steps 1 \
    --epoch-neigh 5
echo "== device_check: $SECONDS s in all, exit $status"
exit $status
