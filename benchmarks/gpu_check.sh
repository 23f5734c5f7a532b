#!/usr/bin/env bash
# On a GPU machine with torch, nvcc and ninja preinstalled (no internet needed):
# build fastrnn for the visible GPU only, run the test suite (CUDA tests included)
# and a GPU benchmark of fastrnn.LSTM against torch.nn.LSTM (cuDNN) with peak memory;
# writes a log, the test report and JSON results into the folder given as argument.
# Not yet run on a GPU: no session so far has been lent one.
#
#   bash benchmarks/gpu_check.sh OUT_DIR
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1

date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
ARCH=$(python -c "import torch; p = torch.cuda.get_device_capability(); print(f'{p[0]}.{p[1]}')")
export TORCH_CUDA_ARCH_LIST=$ARCH MAX_JOBS=${MAX_JOBS:-16}
export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")}
echo "building for sm_$ARCH with CUDA_HOME=$CUDA_HOME"
time pip install --no-build-isolation --no-deps -q . || exit 1

(cd tests && python -m pytest -q -p no:cacheprovider --junitxml="$OUT/tests.xml" . )
TEST_RC=$?

python - "$OUT/gpu_bench.json" <<'PY'
import json, sys
import torch
import torch.utils.benchmark as benchmark
from torch.nn.utils.rnn import pack_padded_sequence
import fastrnn

def median_ms(fn):
    fn(); torch.cuda.synchronize()
    return benchmark.Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=0.5).median * 1e3

def case(cls, batch, inp, hidden, lengths, packed, backward, impl):
    torch.manual_seed(0)
    ref = getattr(torch.nn, cls)(inp, hidden).cuda()
    mod = ref if impl == "torch" else fastrnn.convert(getattr(torch.nn, cls)(inp, hidden)).cuda()
    x = torch.randn(int(lengths.max()), batch, inp, device="cuda", requires_grad=backward)
    def run():
        out = mod(pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x)[0]
        out = out.data if packed else out
        if backward:
            out.sum().backward()
    torch.cuda.reset_peak_memory_stats()
    ms = median_ms(run)
    return ms, torch.cuda.max_memory_allocated()

gen = torch.Generator().manual_seed(0)
shapes = {
    "agnews": (16, 64, 32, torch.randint(26, 65, (16,), generator=gen)),
    "fastrnns": (64, 512, 512, torch.full((64,), 100)),
    "varlen": (64, 512, 512, torch.randint(30, 101, (64,), generator=gen)),
}
rows = []
for shape, (b, i, h, lengths) in shapes.items():
    for packed in (True, False):
        for backward in (False, True):
            row = dict(shape=shape, packed=packed, backward=backward)
            for impl in ("fastrnn", "torch"):
                row[f"{impl}_ms"], row[f"{impl}_peak_bytes"] = case("LSTM", b, i, h, lengths, packed, backward, impl)
            row["speedup"] = row["torch_ms"] / row["fastrnn_ms"]
            print(row, flush=True)
            rows.append(row)
json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, cuda=torch.version.cuda,
               results=rows), open(sys.argv[1], "w"), indent=1)
PY
echo "tests rc=$TEST_RC"
exit $TEST_RC
