"""A tiny workload for compute-sanitizer over every fastrnn CUDA kernel.

    compute-sanitizer --tool memcheck --kernel-name kns=fastrnn python3 benchmarks/gpu_sanitize.py
    GPU_SANITIZE_PATHS=persistent compute-sanitizer --tool racecheck \
        --kernel-name kns=persistent python3 benchmarks/gpu_sanitize.py

(benchmarks/gpu_check.sh runs both.) Each cell x CUDA path {persistent, per_step} x
{float32, bfloat16} x both directions x hidden {9, 33}: the op's forward and backward
on batch_sizes (5, 3, 3, 1) (rows that end early, a block whose rows end at different
steps; hidden 9 leaves most threads of a block idle, 33 is one past a warp), plus a
batch_sizes of more runs than the persistent kernels' parameters hold (their device
table, float32, forward). Sizes are small on purpose: the sanitizers slow kernels down
10-100x. Each case synchronises, so a report names the case printed before it. Exits
non-zero if a case raised; the sanitizer's own verdict is its exit code
(--error-exitcode).
"""
import os
import sys
import time

import torch

import fastrnn

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
MAX_STEP_RUNS = 384  # kMaxStepRuns in csrc/cuda/persistent_kernels.cuh


def case(cell, dtype, reverse, hidden, batch_sizes, backward=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    bs = torch.tensor(batch_sizes, dtype=torch.int64)
    tokens, batch, gh = int(bs.sum()), int(bs[0]), GATES[cell] * hidden

    def rand(*shape, scale=1.0):
        t = (torch.randn(*shape, generator=gen) * scale).to("cuda", dtype)
        return t.requires_grad_(backward)

    args = [rand(tokens, gh), bs, rand(gh, hidden, scale=hidden ** -0.5), rand(gh, scale=0.3),
            rand(batch, hidden)] + ([rand(batch, hidden)] if cell == "lstm" else [])
    outs = getattr(fastrnn, cell)(*args, reverse)
    if backward:
        sum(o.float().pow(2).sum() for o in outs).backward()
    torch.cuda.synchronize()
    values = [o.float() for o in outs]
    if backward:
        values += [a.grad.float() for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    bad = [i for i, v in enumerate(values) if not torch.isfinite(v).all()]
    assert not bad, f"non-finite values in results {bad}"


def main():
    if not torch.cuda.is_available():
        sys.exit("gpu_sanitize.py: no CUDA GPU")
    paths = os.environ.get("GPU_SANITIZE_PATHS", "persistent,per_step").split(",")
    start, failed, count = time.time(), 0, 0
    many_runs = tuple(range(MAX_STEP_RUNS + 2, 0, -1))
    for path in paths:
        os.environ["FASTRNN_CUDA_PATH"] = path
        cases = [(cell, dtype, reverse, hidden, (5, 3, 3, 1), True)
                 for cell in GATES for dtype in (torch.float32, torch.bfloat16)
                 for reverse in (False, True) for hidden in (9, 33)]
        cases += [("lstm", torch.float32, reverse, 5, many_runs, False)
                  for reverse in (False, True)]
        for cell, dtype, reverse, hidden, bs, backward in cases:
            name = (f"{path} {cell} {str(dtype)[6:]} reverse={reverse} hidden={hidden} "
                    f"steps={len(bs)}{' fwd+bwd' if backward else ' fwd'}")
            print(f"case   {name}", flush=True)
            count += 1
            try:
                case(cell, dtype, reverse, hidden, bs, backward)
            except Exception as e:  # noqa: BLE001 - report it and go on
                failed += 1
                print(f"FAILED {name}: {e!r}", flush=True)
                if "CUDA error" in repr(e) or "illegal" in repr(e):
                    print("gpu_sanitize: the CUDA context is lost; stopping", flush=True)
                    break
        else:
            continue
        break
    print(f"gpu_sanitize: {count - failed} of {count} cases ran clean in "
          f"{time.time() - start:.1f} s", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
