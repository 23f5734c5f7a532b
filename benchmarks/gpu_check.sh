#!/usr/bin/env bash
# The GPU check, made to succeed on the first try inside a short GPU lease: on a GPU
# machine with torch, nvcc and ninja preinstalled (no internet needed), build fastrnn
# in place for the visible GPU only, check the CUDA kernels are registered, run the
# CUDA tests (tests/test_cuda.py; without pytest benchmarks/gpu_smoke.py), rerun the
# first failing test with CUDA_LAUNCH_BLOCKING=1, run compute-sanitizer (memcheck on
# every fastrnn kernel, racecheck on the persistent kernels) over
# benchmarks/gpu_sanitize.py, and the GPU benchmark (benchmarks/bench_gpu.py).
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# OUT_DIR gets at most 8 files: gpu_check.log (everything, as it happens), build.log
# (with ptxas register/spill lines), tests.jsonl (one line per test as it starts and
# ends: survives a kill), tests.xml (junit; tests-resumed.xml for a resumed run),
# sanitizer.log, bench.json (rewritten after every row) and summary.json.
#
# Every step runs under `timeout` cut to what is left of GPU_CHECK_BUDGET seconds
# (default 330: a 15-minute lease minus the machine's start leaves room for one
# rerun), SIGINT first (pytest then still writes its junit xml, the benchmark keeps
# its rows), SIGKILL 10 s later. A failed step never stops the script; the summary
# line and summary.json come last, always.
#
# Environment: PYTHON (default python3), CUDA_HOME (default /usr/local/cuda when it
# holds bin/nvcc, else the toolkit of nvcc on PATH), MAX_JOBS (default: CPU count),
# GPU_CHECK_BUDGET (seconds, default 330), GPU_CHECK_TEST_TIMEOUT (seconds per test,
# default 60), GPU_CHECK_SKIP_SANITIZER=1, GPU_CHECK_SKIP_BENCH=1,
# FASTRNN_FULL_SUITE=1 (the whole suite instead of tests/test_cuda.py).
set -u
OUT=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PY=${PYTHON:-python3}
exec > >(tee "$OUT/gpu_check.log") 2>&1
TEE_PID=$!
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-330}
SCRATCH=$(mktemp -d)

# Seconds a step may run: at most $1 and what is left of the budget less 25 s (the
# SIGKILL grace and the summary); at least 5.
limit() {
  local left=$(( BUDGET - ($(date +%s) - START) - 25 )) cap=$1
  (( left < cap )) && cap=$left
  (( cap < 5 )) && cap=5
  echo "$cap"
}
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# run_step NAME CAP CMD...: runs CMD under `limit CAP`, records rc and seconds of NAME.
declare -A RC SECS
run_step() {
  local name=$1 cap; cap=$(limit "$2"); shift 2
  local t0; t0=$(date +%s)
  echo "== [$name] (at most ${cap} s, $(left) s of the budget left): $*"
  timeout -s INT -k 10 "$cap" "$@"
  RC[$name]=$?
  SECS[$name]=$(( $(date +%s) - t0 ))
  (( RC[$name] == 124 )) && echo "== [$name] TIMED OUT after ${cap} s"
  echo "== [$name] exit ${RC[$name]} in ${SECS[$name]} s"
  return "${RC[$name]}"
}
skip() { RC[$1]=skipped; echo "== [$1] skipped: $2"; }

summary() {
  local steps=""
  for k in "${!RC[@]}"; do steps+="\"$k\": [\"${RC[$k]}\", ${SECS[$k]:-0}], "; done
  "$PY" - "$OUT" "{${steps%, }}" "$(( $(date +%s) - START ))" "${ARCH:-unknown}" \
      "${CUDA_HOME:-}" <<'PY' || echo "summary.json: failed"
import json, os, re, sys
out, steps, seconds, arch, cuda_home = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:]
s = dict(arch=arch, cuda_home=cuda_home, seconds=seconds,
         steps={k: dict(rc=v[0], seconds=v[1]) for k, v in steps.items()})
try:
    ended, started = {}, []
    for line in open(os.path.join(out, "tests.jsonl")):
        r = json.loads(line)
        if "outcome" in r:
            ended.setdefault(r["nodeid"], r["outcome"])
        elif r.get("event") == "start":
            started.append(r["nodeid"])
    counts = {}
    for o in ended.values():
        counts[o] = counts.get(o, 0) + 1
    s["tests"] = counts
    s["tests_never_ended"] = [n for n in started if n not in ended]
    s["first_failure"] = next((n for n in started if ended.get(n, "failed") == "failed"), None)
except OSError:
    pass
try:
    log = open(os.path.join(out, "sanitizer.log"), errors="replace").read()
    s["sanitizer"] = re.findall(r"== (?:ERROR|RACECHECK) SUMMARY: .*", log)
except OSError:
    pass
try:
    bench = json.load(open(os.path.join(out, "bench.json")))
    s["bench_complete"] = bench.get("complete")
    s["bench_targets"] = bench.get("targets")
except (OSError, ValueError):
    pass
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
print("== summary:", json.dumps({k: s[k] for k in s if k not in ("bench_targets",)}))
for t in s.get("bench_targets") or []:
    print(f"   {'MET   ' if t['met'] else 'MISSED'} {t['target']}: {t['speedup']:.2f}x")
PY
}
# The summary, then close the pipe to tee and wait: the log ends with the summary.
trap 'summary; rm -rf "$SCRATCH"; exec >&- 2>&-; wait "$TEE_PID" 2>/dev/null' EXIT
trap 'echo "== killed by a signal"; exit 143' TERM INT HUP

echo "== facts ($(date -u +%FT%TZ), budget ${BUDGET} s)"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 | head -5
timeout 60 "$PY" - <<'PY'
import os, sys, sysconfig
print("python", sys.executable, sys.version.split()[0])
inc = sysconfig.get_paths()["include"]
print("Python.h", "present" if os.path.exists(os.path.join(inc, "Python.h")) else "MISSING", "in", inc)
for mod in ("pytest", "ninja", "numpy", "hypothesis", "expecttest"):
    try:
        m = __import__(mod)
        print(mod, getattr(m, "__version__", "present"))
    except ImportError:
        print(mod, "MISSING")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0),
      torch.cuda.is_available() and torch.cuda.get_device_capability(0))
PY
ARCH=$(timeout 60 "$PY" -c "import torch; p = torch.cuda.get_device_capability(); print(f'{p[0]}.{p[1]}')" 2>/dev/null) \
  || { echo "no CUDA GPU visible to torch: nothing to check"; exit 1; }

# The toolkit: CUDA_HOME as given, else the default install folder when it holds
# bin/nvcc, else the folder above nvcc on PATH (as found, then with links resolved).
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    CUDA_HOME=/usr/local/cuda
  elif NVCC=$(command -v nvcc); then
    for cand in "$(dirname "$(dirname "$NVCC")")" "$(dirname "$(dirname "$(readlink -f "$NVCC")")")"; do
      if [ -x "$cand/bin/nvcc" ]; then CUDA_HOME=$cand; break; fi
    done
  fi
fi
echo "CUDA_HOME=${CUDA_HOME:-NOT FOUND} ($("${CUDA_HOME:-/nonexistent}/bin/nvcc" --version 2>/dev/null | tail -2 | head -1))"
SANITIZER=""
for cand in "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer" \
            "${CUDA_HOME:-/nonexistent}/compute-sanitizer/compute-sanitizer" "$(command -v compute-sanitizer)"; do
  if [ -n "$cand" ] && [ -x "$cand" ]; then SANITIZER=$cand; break; fi
done
echo "compute-sanitizer: ${SANITIZER:-not found}"
export CUDA_HOME TORCH_CUDA_ARCH_LIST=$ARCH MAX_JOBS=${MAX_JOBS:-$(nproc)}
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -Xptxas -v"  # registers/spills to build.log
export PYTHONPATH="$ROOT:$ROOT/benchmarks${PYTHONPATH:+:$PYTHONPATH}"

rm -rf build fastrnn/_C*.so
run_step build 170 "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1
grep -iE "warning|error" "$OUT/build.log" | grep -v "^ptxas info" | head -20
grep -A2 "Compiling entry function" "$OUT/build.log" | grep -E "spill|registers" \
  | sort | uniq -c | sort -rn | head -8
if [ "${RC[build]}" != 0 ]; then
  tail -40 "$OUT/build.log"
  echo "build failed: nothing else can run"
  exit 1
fi

cd tests || exit 1
run_step registered 60 "$PY" -c "
import torch, fastrnn
for op in ('lstm', 'gru', 'rnn_tanh', 'rnn_relu'):
    for half in ('forward', 'backward'):
        table = torch._C._dispatch_dump(f'fastrnn::{op}_{half}')
        assert '\nCUDA:' in table, f'fastrnn::{op}_{half} has no CUDA kernel:\n{table}'
print('CUDA kernels registered for every op')"

if "$PY" -c "import pytest" 2>/dev/null; then
  SUITE=test_cuda.py
  [ "${FASTRNN_FULL_SUITE:-0}" = 1 ] && SUITE=.
  export GPU_CHECK_JSONL=$OUT/tests.jsonl GPU_CHECK_TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT:-60} \
    GPU_CHECK_TRACEBACKS=$SCRATCH/tracebacks.txt
  show_tracebacks() {  # what faulthandler wrote for a test over its timeout
    if [ -s "$GPU_CHECK_TRACEBACKS" ]; then
      echo "== a test ran over GPU_CHECK_TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT} s; tracebacks:"
      head -80 "$GPU_CHECK_TRACEBACKS"
      : > "$GPU_CHECK_TRACEBACKS"
    fi
  }
  : > "$GPU_CHECK_JSONL"
  PYTEST=("$PY" -m pytest -v -p gpu_check_plugin -p no:cacheprovider -rfE --durations=10)
  run_step tests 110 "${PYTEST[@]}" --junitxml="$OUT/tests.xml" $SUITE
  show_tracebacks
  # A CUDA error stopped the session (the plugin's "stopped" line), or pytest crashed
  # or hit the per-test timeout (exit status not 0/1/5): resume the tests that have no
  # result yet in a fresh process (a fresh CUDA context).
  if { [ "${RC[tests]}" = 1 ] && grep -q '"event": "stopped"' "$GPU_CHECK_JSONL"; } ||
     { [ "${RC[tests]}" != 0 ] && [ "${RC[tests]}" != 1 ] && [ "${RC[tests]}" != 5 ]; }; then
    if (( $(left) > 90 )); then
      run_step tests_resumed 60 env GPU_CHECK_SKIP="$GPU_CHECK_JSONL" "${PYTEST[@]}" \
        --junitxml="$OUT/tests-resumed.xml" $SUITE
      show_tracebacks
    fi
  fi
  # The test to rerun alone with synchronous launches (the error then points at the
  # kernel that caused it): the one whose CUDA error stopped the session, else the first
  # that never ended (a hang or a crash), else the first that failed.
  FIRST=$("$PY" - "$GPU_CHECK_JSONL" <<'PY'
import json, sys
ended, started, stopped = {}, [], []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "outcome" in r:
        ended.setdefault(r["nodeid"], r["outcome"])
    elif r.get("event") == "start":
        started.append(r["nodeid"])
    elif r.get("event") == "stopped":
        stopped.append(r["nodeid"])
hung = [n for n in started if n not in ended]
failed = [n for n in started if ended.get(n) == "failed"]
print((stopped + hung + failed + [""])[0])
PY
)
  cd "$ROOT" || exit 1  # node ids are relative to the repository root
  if [ -n "$FIRST" ]; then
    echo "== FIRST FAILURE to rerun (CUDA error, else hang/crash, else first failed): $FIRST"
    run_step rerun_blocking 45 env CUDA_LAUNCH_BLOCKING=1 GPU_CHECK_JSONL="$SCRATCH/rerun.jsonl" \
      "$PY" -m pytest -v -x -p gpu_check_plugin -p no:cacheprovider "$FIRST"
    show_tracebacks
  fi
else
  echo "== pytest is not installed: smoke checks (both CUDA paths) instead of tests/test_cuda.py"
  run_step smoke 90 "$PY" "$ROOT/benchmarks/gpu_smoke.py"
fi
cd "$ROOT" || exit 1

# compute-sanitizer: memcheck on every fastrnn kernel, racecheck on the persistent ones.
if [ "${GPU_CHECK_SKIP_SANITIZER:-0}" = 1 ]; then
  skip sanitizer "GPU_CHECK_SKIP_SANITIZER=1"
elif [ -z "$SANITIZER" ]; then
  skip sanitizer "compute-sanitizer not found"
else
  FILTER=()
  "$SANITIZER" --help 2>&1 | grep -q -- "--kernel-name" && FILTER=(--kernel-name)
  : > "$OUT/sanitizer.log"
  run_step memcheck 60 "$SANITIZER" --tool memcheck --error-exitcode 86 --print-limit 20 \
    ${FILTER[@]:+"${FILTER[@]}" kns=fastrnn} "$PY" benchmarks/gpu_sanitize.py >> "$OUT/sanitizer.log" 2>&1
  grep -E "^========= (ERROR SUMMARY|Invalid|Program hit)|FAILED|gpu_sanitize:" "$OUT/sanitizer.log" | head -20
fi

if [ "${GPU_CHECK_SKIP_BENCH:-0}" = 1 ]; then
  skip bench "GPU_CHECK_SKIP_BENCH=1"
else
  run_step bench 70 "$PY" benchmarks/bench_gpu.py --min-run-time 0.15 --json "$OUT/bench.json"
fi

if [ -n "$SANITIZER" ] && [ "${GPU_CHECK_SKIP_SANITIZER:-0}" != 1 ]; then
  # The persistent kernels only (the per-step kernels share no memory between threads).
  run_step racecheck 45 env GPU_SANITIZE_PATHS=persistent "$SANITIZER" --tool racecheck \
    --racecheck-report hazard --error-exitcode 86 --print-limit 20 \
    ${FILTER[@]:+"${FILTER[@]}" kns=persistent} "$PY" benchmarks/gpu_sanitize.py >> "$OUT/sanitizer.log" 2>&1
  grep -E "^========= (RACECHECK SUMMARY|ERROR SUMMARY|Error|Warning)|FAILED|gpu_sanitize:" \
    "$OUT/sanitizer.log" | tail -8
fi

FAILED=0
for k in "${!RC[@]}"; do
  [ "${RC[$k]}" = 0 ] || [ "${RC[$k]}" = skipped ] || FAILED=1
done
exit $FAILED
