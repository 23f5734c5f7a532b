#!/usr/bin/env bash
# On a GPU machine with torch, nvcc and ninja preinstalled (no internet needed):
# build fastrnn in place for the visible GPU only, check the CUDA kernels are
# registered, run the CUDA tests (tests/test_cuda.py: both CUDA paths forced in
# turn) or, without pytest, benchmarks/gpu_smoke.py, then the GPU benchmark
# (benchmarks/bench_gpu.py: fastrnn vs torch.nn/cuDNN with peak memory).
# Everything lands in OUT_DIR: gpu_check.log (all output), build.log,
# tests.xml, bench.json, summary.json. Keeps going after a failed step and
# always writes what it has; about 3-6 minutes (the build dominates). Every step
# runs under a timeout cut to what is left of GPU_CHECK_BUDGET seconds (default
# 480), so the whole script ends, summary.json included, within that budget; a
# step that runs out gets SIGINT first (pytest still writes tests.xml, the
# benchmark keeps the rows it has in bench.json).
#
#   bash benchmarks/gpu_check.sh OUT_DIR
# Environment: PYTHON (default python, else python3), MAX_JOBS (default 16),
# CUDA_HOME (default: from nvcc on PATH), GPU_CHECK_BUDGET (seconds, default 480),
# FASTRNN_FULL_SUITE=1 also runs the CPU suite.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$(command -v python || command -v python3 || echo python)}
exec > >(tee "$OUT/gpu_check.log") 2>&1
TEE_PID=$!
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-480}

# Seconds a step may run: at most $1, and no more than what is left of the budget
# (less 35 s: the SIGKILL grace below and the summary); at least 5.
limit() {
  local left=$(( BUDGET - ($(date +%s) - START) - 35 )) cap=$1
  (( left < cap )) && cap=$left
  (( cap < 5 )) && cap=5
  echo "$cap"
}
# Runs a step under `limit $1`: SIGINT at the limit, SIGKILL 15 s later.
run_step() {
  local cap=$1; shift
  timeout -s INT -k 15 "$(limit "$cap")" "$@"
}
BUILD_RC=-1 REGISTERED_RC=-1 TESTS_RC=-1 SMOKE_RC=-1 BENCH_RC=-1 ARCH=unknown

summary() {
  "$PY" - "$OUT/summary.json" <<PY || true
import json, sys
json.dump(dict(arch="$ARCH", build_rc=$BUILD_RC, registered_rc=$REGISTERED_RC,
               tests_rc=$TESTS_RC, smoke_rc=$SMOKE_RC, bench_rc=$BENCH_RC,
               seconds=$(( $(date +%s) - START ))), open(sys.argv[1], "w"), indent=1)
PY
  echo "== summary: arch=$ARCH build=$BUILD_RC registered=$REGISTERED_RC tests=$TESTS_RC" \
       "smoke=$SMOKE_RC bench=$BENCH_RC in $(( $(date +%s) - START )) s"
}
# After the summary, close the pipe to tee and wait for it: the log then ends with the
# summary line before the caller collects OUT_DIR.
trap 'summary; exec >&- 2>&-; wait "$TEE_PID" 2>/dev/null' EXIT

echo "== machine"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())"
ARCH=$("$PY" -c "import torch; p = torch.cuda.get_device_capability(); print(f'{p[0]}.{p[1]}')") \
  || { echo "no CUDA GPU visible to torch"; exit 1; }
if [ -z "${CUDA_HOME:-}" ]; then
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
fi
export CUDA_HOME TORCH_CUDA_ARCH_LIST=$ARCH MAX_JOBS=${MAX_JOBS:-16}
# Register and shared-memory use of every kernel go to build.log.
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -Xptxas -v"

echo "== build for sm_$ARCH (CUDA_HOME=$CUDA_HOME, MAX_JOBS=$MAX_JOBS)"
rm -rf build fastrnn/_C*.so
time run_step 300 "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1
BUILD_RC=$?
grep -iE "warning|error" "$OUT/build.log" | grep -v "^ptxas info" | head -40
grep -A3 "Compiling entry function" "$OUT/build.log" | grep -E "Compiling|registers|spill" \
  | sed -E 's/_Z[0-9]+//' | head -80
if [ "$BUILD_RC" != 0 ]; then
  tail -60 "$OUT/build.log"
  echo "build failed"
  exit 1
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

echo "== CUDA kernels registered"
(cd tests && "$PY" - <<'PY'
import torch, fastrnn
for op in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
    for half in ("forward", "backward"):
        table = torch._C._dispatch_dump(f"fastrnn::{op}_{half}")
        assert "\nCUDA:" in table, f"fastrnn::{op}_{half} has no CUDA kernel:\n{table}"
print("CUDA kernels registered for every op")
PY
)
REGISTERED_RC=$?

if "$PY" -c "import pytest" 2>/dev/null; then
  echo "== CUDA tests (both CUDA paths)"
  SUITE=test_cuda.py
  [ "${FASTRNN_FULL_SUITE:-0}" = 1 ] && SUITE=.
  (cd tests && run_step 240 "$PY" -m pytest -q -p no:cacheprovider -rfE --durations=10 \
      --junitxml="$OUT/tests.xml" $SUITE)
  TESTS_RC=$?
else
  echo "== pytest is not installed: smoke checks (both CUDA paths) instead of tests/test_cuda.py"
  run_step 90 "$PY" benchmarks/gpu_smoke.py
  SMOKE_RC=$?
fi

echo "== GPU benchmark"
run_step 200 "$PY" benchmarks/bench_gpu.py --json "$OUT/bench.json"
BENCH_RC=$?
exit $(( BUILD_RC || REGISTERED_RC || (SMOKE_RC > 0) || (TESTS_RC > 0) || BENCH_RC ))
