// A C ABI over the persistent CUDA kernels run on the CPU (cuda_shim.h), for
// tests/test_persistent_emulated.py. Each call fills the kernel's parameter struct as
// persistent.cu does (the step table by value, or in an external table) and runs the
// kernel over all blocks with the launch shape the caller gives, in shared memory of
// exactly the size persistent.cu asks for. Before each block all of shared memory is
// filled with 0xFF bytes (NaN in every float type), so a read of anything the kernel did
// not write first shows up as NaN; after it, the bytes past the requested size must
// still be 0xFF.
#include "cuda_shim.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "cells.h"
#include "cuda/persistent_kernels.cuh"

namespace fastrnn {
namespace cuda {
constexpr int64_t kSmemCapacity = 1 << 20;
alignas(16) unsigned char smem_raw[kSmemCapacity];  // the kernels' extern __shared__ array
}  // namespace cuda
}  // namespace fastrnn

namespace {

using namespace fastrnn;
using namespace fastrnn::cuda;

// Runs body() as `threads` threads of each of `blocks` blocks; false if a block wrote
// past `smem` bytes of shared memory.
template <typename Body>
bool launch(int64_t blocks, int threads, int64_t smem, const Body& body) {
  if (smem > kSmemCapacity) return false;
  for (int64_t b = 0; b < blocks; ++b) {
    std::memset(smem_raw, 0xFF, kSmemCapacity);
    std::barrier<> barrier(threads);
    emulated_block_barrier = &barrier;
    blockIdx.x = static_cast<unsigned>(b);
    blockDim.x = static_cast<unsigned>(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        threadIdx.x = static_cast<unsigned>(t);
        body();
      });
    }
    for (auto& th : pool) th.join();
    for (int64_t i = smem; i < kSmemCapacity; ++i) {
      if (smem_raw[i] != 0xFF) return false;
    }
  }
  return true;
}

struct Args {
  int64_t steps, batch;
  int H, rows, threads, reverse, keep_saved, external_runs;
  const int64_t* sizes;  // batch_sizes (the kernels see only the runs built from them)
  // forward: gx, w, bias, h0, c0 in; out, saved, h_n, c_n out.
  // backward: gout, w, h0, c0, out, saved in; dh_n, dc_n in (h_n, c_n); dh0, dc0 out
  // (dgx is followed by dgx, dgh, h_prev).
  const void *a, *w, *b, *h0, *c0, *out_in, *saved_in;
  void *out, *saved, *h_n, *c_n, *dgx, *dgh, *h_prev, *dh0, *dc0;
  const void* zoneout;  // [N, K*H] keep weights: Zoneout<Cell>; nullptr: the plain cell
};

// The kernels' step table, as persistent.cu fills it: the runs by value in the
// parameters, or (more than kMaxStepRuns runs, or external_runs) in `ext`.
void fill_shape(PersistentShape& p, const Args& x, std::vector<int32_t>& ext) {
  p.steps = x.steps;
  p.batch = x.batch;
  p.H = x.H;
  p.rows_per_block = x.rows;
  p.reverse = x.reverse;
  p.tokens = 0;
  for (int64_t t = 0; t < x.steps; ++t) p.tokens += x.sizes[t];
  ext = step_runs(x.sizes, x.steps);
  const int32_t count = static_cast<int32_t>(ext.size() / 2);
  p.runs.count = count;
  if (count > kMaxStepRuns || x.external_runs) {
    p.runs_ext = ext.data();
  } else {
    p.runs_ext = nullptr;
    std::copy(ext.begin(), ext.begin() + count, p.runs.size);
    std::copy(ext.begin() + count, ext.end(), p.runs.len);
    // The kernels must not read the host's table: scribble over it.
    std::fill(ext.begin(), ext.end(), -1);
  }
}

template <typename T, typename Cell, typename W>
bool run(bool forward, const Args& x) {
  const int64_t blocks = (x.batch + x.rows - 1) / x.rows;
  // The size persistent.cu asks for, from the same function.
  const int64_t smem = persistent_smem_bytes(Cell::kGates, x.H, sizeof(W), sizeof(T), x.rows);
  auto t = [](const void* p) { return static_cast<const T*>(p); };
  auto m = [](void* p) { return static_cast<T*>(p); };
  std::vector<int32_t> ext;
  if (forward) {
    PersistentForwardParams<T, W> p{};
    fill_shape(p, x, ext);
    p.keep_saved = x.keep_saved;
    p.gx = t(x.a), p.w = static_cast<const W*>(x.w), p.bias = t(x.b), p.h0 = t(x.h0);
    p.c0 = t(x.c0), p.out = m(x.out), p.saved = m(x.saved), p.h_n = m(x.h_n), p.c_n = m(x.c_n);
    p.zoneout = t(x.zoneout);
    return launch(blocks, x.threads, smem, [&] { persistent_forward_kernel<T, Cell, W>(p); });
  }
  PersistentBackwardParams<T, W> p{};
  fill_shape(p, x, ext);
  p.gout = t(x.a), p.w = static_cast<const W*>(x.w), p.h0 = t(x.h0), p.c0 = t(x.c0);
  p.out = t(x.out_in), p.saved = t(x.saved_in), p.dh_n = t(x.h_n), p.dc_n = t(x.c_n);
  p.dh0 = m(x.dh0), p.dc0 = m(x.dc0), p.dgx = m(x.dgx), p.dgh = m(x.dgh);
  p.h_prev = m(x.h_prev);
  p.zoneout = t(x.zoneout);
  return launch(blocks, x.threads, smem, [&] { persistent_backward_kernel<T, Cell, W>(p); });
}

template <typename T, typename W>
bool run_cell(int cell, bool forward, const Args& x) {
  return with_cell<T>(static_cast<CellKind>(cell), x.zoneout != nullptr,
                      [&](auto cell_tag) { return run<T, decltype(cell_tag), W>(forward, x); });
}

}  // namespace

extern "C" int max_rows() { return kPersistentMaxRows; }

// cell: a CellKind (csrc/cells.h: 0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu). dtype: 0 float,
// 1 double.
// weight: 0 the compute dtype, 1 float16, 2 bfloat16 (float compute only).
// Returns 1 when the kernel ran and stayed inside its shared memory, else 0.
extern "C" int emulate(int forward, int cell, int dtype, int weight, const Args* x) {
  if (dtype == 1) return run_cell<double, double>(cell, forward, *x);
  if (weight == 1) return run_cell<float, c10::Half>(cell, forward, *x);
  if (weight == 2) return run_cell<float, c10::BFloat16>(cell, forward, *x);
  return run_cell<float, float>(cell, forward, *x);
}
