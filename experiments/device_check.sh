#!/usr/bin/env bash
# The GPU path, on a CUDA machine, in under 5 minutes: the tests marked `cuda` (a tiny climb, a
# tiny DARTS search, the fast supernet against the plain one, morphisms preserving the function
# in fp32 and bf16, networks saved on one device and loaded on another), then the three
# benchmarks at CIFAR size. Each benchmark's last line is a JSON object; all output goes to
# stdout and to $OUT (default: ./device-check) for a closing note to quote.
#
#     bash experiments/device_check.sh            # needs torch with CUDA and `pip install -e .[test]`
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device-check}"
mkdir -p "$OUT"
python - <<'PY' || { echo "device_check: no CUDA device visible to torch" >&2; exit 2; }
import torch, sys
assert torch.cuda.is_available()
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0),
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
status=0
step() {  # step NAME COMMAND...: run, keep its output, remember a failure, go on
    local name="$1"; shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}
step tests python -m pytest -q -m cuda tests/
step bench_darts python experiments/bench_darts.py --device cuda --sizes paper --steps 10 --rounds 3
step bench_train python experiments/bench_train.py --device cuda --data random32 --epochs 3 --rounds 3
step bench_climb python experiments/bench_climb.py --device cuda --data random32 --subset 5000 --steps 1
exit $status
