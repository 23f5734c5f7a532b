// A C ABI over the persistent CUDA kernels run on the CPU (cuda_shim.h), for
// tests/test_persistent_emulated.py. Each call runs one kernel over all blocks with the
// launch shape the caller gives, in shared memory of exactly the size persistent.cu
// asks for. Before each block all of shared memory is filled with 0xFF bytes (NaN in
// every float type), so a read of anything the kernel did not write first shows up as
// NaN; after it, the bytes past the requested size must still be 0xFF.
#include "cuda_shim.h"

#include <cstring>
#include <thread>
#include <vector>

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
  int H, rows, threads, reverse, keep_saved;
  const int64_t *sizes, *offsets;
  // forward: gx, w, bias, h0, c0 in; out, saved, h_n, c_n out.
  // backward: gout, w, h0, c0, out, saved in; dh, dc in/out; dgx, dgh, h_prev out.
  const void *a, *w, *b, *h0, *c0, *out_in, *saved_in;
  void *out, *saved, *h_n, *c_n, *dgx, *dgh, *h_prev;
};

template <typename T, typename Cell, typename W>
bool run(bool forward, const Args& x) {
  const int64_t blocks = (x.batch + x.rows - 1) / x.rows;
  // The size persistent.cu asks for, from the same function.
  const int64_t smem = persistent_smem_bytes(Cell::kGates, x.H, sizeof(W), sizeof(T), x.rows);
  auto t = [](const void* p) { return static_cast<const T*>(p); };
  auto m = [](void* p) { return static_cast<T*>(p); };
  if (forward) {
    return launch(blocks, x.threads, smem, [&] {
      persistent_forward_kernel<T, Cell, W>(
          x.steps, x.batch, x.H, x.rows, x.reverse, x.keep_saved, x.sizes, x.offsets, t(x.a),
          static_cast<const W*>(x.w), t(x.b), t(x.h0), t(x.c0), m(x.out), m(x.saved),
          m(x.h_n), m(x.c_n));
    });
  }
  return launch(blocks, x.threads, smem, [&] {
    persistent_backward_kernel<T, Cell, W>(
        x.steps, x.batch, x.H, x.rows, x.reverse, x.sizes, x.offsets, t(x.a),
        static_cast<const W*>(x.w), t(x.h0), t(x.c0), t(x.out_in), t(x.saved_in), m(x.h_n),
        m(x.c_n), m(x.dgx), m(x.dgh), m(x.h_prev));
  });
}

template <typename T, typename W>
bool run_cell(int cell, bool forward, const Args& x) {
  switch (cell) {
    case 0: return run<T, LSTMCell<T>, W>(forward, x);
    case 1: return run<T, GRUCell<T>, W>(forward, x);
    case 2: return run<T, RNNCell<T, false>, W>(forward, x);
    default: return run<T, RNNCell<T, true>, W>(forward, x);
  }
}

}  // namespace

// cell: 0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu. dtype: 0 float, 1 double.
// weight: 0 the compute dtype, 1 float16, 2 bfloat16 (float compute only).
// Returns 1 when the kernel ran and stayed inside its shared memory, else 0.
extern "C" int emulate(int forward, int cell, int dtype, int weight, const Args* x) {
  if (dtype == 1) return run_cell<double, double>(cell, forward, *x);
  if (weight == 1) return run_cell<float, c10::Half>(cell, forward, *x);
  if (weight == 2) return run_cell<float, c10::BFloat16>(cell, forward, *x);
  return run_cell<float, float>(cell, forward, *x);
}
