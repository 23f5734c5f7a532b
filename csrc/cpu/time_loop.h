// The pieces every CPU time loop shares (csrc/cpu/recurrence_cpu.cpp for the plain cells,
// csrc/cpu/layer_norm_cpu.cpp for the LayerNorm ones): the per-step GEMM, the row-block
// threading and the previous-state lookup of a packed sequence.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "../raw_gemm.h"
#include "../recurrence.h"
#include "small_gemm.h"

namespace fastrnn {
namespace cpu {

// Work (multiply-adds, ~30 us) below which a step runs on one thread: at::parallel_for
// on a 16-row step (the AG News shape) costs more in fork/join than it saves.
inline constexpr int64_t kParallelWork = 1 << 20;

// Calls of up to 2 steps build no transposed copy of W_hh (StepGemm::of_transpose): up to 4
// rows in all the small kernel reads W_hh itself, beyond that BLAS takes it as a view.
inline constexpr int64_t kStepsWithoutTranspose = 2;
inline constexpr int64_t kRowsWithoutTranspose = 4;

// Per-step product of live rows with a weight: C = init + A @ B, B row-major
// [K, N]. Small weights use small_gemm on raw pointers; large ones BLAS via
// ATen, whose per-call overhead is negligible at those sizes.
// FASTRNN_CPU_GEMM=small|dot|blas forces one path (tests cover each): the small kernel on
// a transposed copy, the small kernel on W itself (forward only), BLAS.
template <typename T>
class StepGemm {
 public:
  StepGemm(const at::Tensor& B, int64_t K, int64_t N) : B_(B), K_(K), N_(N) {
    const char* env = std::getenv("FASTRNN_CPU_GEMM");
    force_ = env ? env : "";
    if (force_ == "small" || force_ == "dot") {
      use_blas_ = false;
    } else if (force_ == "blas") {
      use_blas_ = true;
    } else {
      use_blas_ = K * N * static_cast<int64_t>(sizeof(T)) > (256 << 10);
    }
  }

  // B = W^T for a weight W [N, K] (the forward's h @ W_hh^T), over `tokens` rows in all in
  // `steps` steps. Nothing derived from W is built where it would cost about what it saves:
  // BLAS takes W^T as a view (a transposed operand), and so it runs calls of one or two steps
  // (one-step calls, the decoder and streaming pattern) but for a few rows, which the small
  // kernel computes on W itself (small_gemm_nt_rows: GEMV-like dot products). Otherwise the
  // small path transposes W into memory of its own, which the sequence's steps amortise (at
  // the AG News shape ATen's transposing copy costs more in dispatch than the copy itself).
  static StepGemm of_transpose(const at::Tensor& W, int64_t tokens, int64_t steps) {
    const int64_t N = W.size(0), K = W.size(1);
    StepGemm gemm(W, K, N);
    const bool automatic = gemm.force_.empty();
    if (automatic && !gemm.use_blas_ && steps <= kStepsWithoutTranspose &&
        tokens > kRowsWithoutTranspose) {
      gemm.use_blas_ = true;
    }
    if (gemm.use_blas_) {
      gemm.B_ = W.contiguous().t();
      return gemm;
    }
    const at::Tensor w = W.contiguous();
    if (gemm.force_ == "dot" || (automatic && steps <= kStepsWithoutTranspose)) {
      gemm.B_ = w;
      gemm.nt_ = true;
      return gemm;
    }
    const T* src = w.const_data_ptr<T>();
    gemm.transposed_.resize(K * N);
    // In 16 x 16 tiles: a row-by-row loop writes with a stride of N elements and misses the
    // cache on every write (measured: 320 us for a 128 x 512 weight).
    constexpr int64_t kTile = 16;
    T* dst = gemm.transposed_.data();
    for (int64_t n0 = 0; n0 < N; n0 += kTile) {
      for (int64_t k0 = 0; k0 < K; k0 += kTile) {
        const int64_t n1 = std::min(N, n0 + kTile), k1 = std::min(K, k0 + kTile);
        for (int64_t n = n0; n < n1; ++n) {
          for (int64_t k = k0; k < k1; ++k) dst[k * N + n] = src[n * K + k];
        }
      }
    }
    gemm.B_ = at::Tensor();
    return gemm;
  }

  bool use_blas() const { return use_blas_; }

  // Rows [r0, r1) with the small kernel (called per row block).
  void rows(int64_t r0, int64_t r1, const T* A, int64_t lda, T* C, int64_t ldc, const T* bias,
            bool accumulate) const {
    if (nt_) {
      small_gemm_nt_rows<T>(r0, r1, N_, K_, A, lda, B_.const_data_ptr<T>(), K_, C, ldc, bias,
                            accumulate);
      return;
    }
    const T* B = transposed_.empty() ? B_.const_data_ptr<T>() : transposed_.data();
    small_gemm_rows<T>(r0, r1, N_, K_, A, lda, B, N_, C, ldc, bias, accumulate);
  }

  // All M rows through BLAS.
  void blas(int64_t M, const T* A, int64_t lda, T* C, int64_t ldc, const at::Tensor& bias,
            bool accumulate) const {
    raw_gemm<T>(B_, M, A, lda, C, ldc, bias, accumulate);
  }

 private:
  at::Tensor B_;
  std::vector<T> transposed_;  // B of of_transpose's small path (B_ undefined)
  int64_t K_, N_;
  bool use_blas_;
  bool nt_ = false;  // B_ holds W [N, K] itself (of_transpose of few rows)
  std::string force_;  // $FASTRNN_CPU_GEMM
};

// Runs fn(row_begin, row_end) over [0, rows), in parallel when the step has
// enough work.
template <typename F>
inline void for_rows(int64_t rows, int64_t work_per_row, const F& fn) {
  if (rows * work_per_row < kParallelWork || at::get_num_threads() == 1) {
    fn(0, rows);
  } else {
    int64_t grain = std::max<int64_t>(1, kParallelWork / 4 / std::max<int64_t>(work_per_row, 1));
    at::parallel_for(0, rows, grain, fn);
  }
}

// Runs fn(row_begin, row_end) on blocks of rows that each own their rows for
// the whole sequence. The rows of a packed batch are independent recurrences,
// so with the small GEMM a thread can walk every step of its own rows: one
// fork/join per call instead of one per step. Blocks hold about equal numbers
// of tokens; with little work, or one thread, fn(0, batch) runs here.
template <typename F>
inline void for_row_blocks(const PackedSteps& steps, int64_t batch, int64_t work_per_token,
                    const F& fn) {
  const int64_t tokens = steps.steps() > 0 ? steps.offsets.back() + steps.sizes.back() : 0;
  const int64_t blocks = std::min<int64_t>(at::get_num_threads(), batch);
  if (blocks <= 1 || tokens * work_per_token < kParallelWork || at::in_parallel_region()) {
    fn(0, batch);
    return;
  }
  // row_tokens[r] = tokens of row r = number of steps with more than r live rows.
  std::vector<int64_t> row_tokens(batch + 1, 0);
  for (int64_t size : steps.sizes) row_tokens[size - 1] += 1;
  for (int64_t r = batch - 1; r > 0; --r) row_tokens[r - 1] += row_tokens[r];
  std::vector<int64_t> split{0};
  int64_t done = 0;
  for (int64_t r = 0; r < batch && static_cast<int64_t>(split.size()) < blocks; ++r) {
    done += row_tokens[r];
    if (done * blocks >= tokens * static_cast<int64_t>(split.size())) split.push_back(r + 1);
  }
  if (split.back() != batch) split.push_back(batch);
  at::parallel_for(0, static_cast<int64_t>(split.size()) - 1, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(split[i], split[i + 1]);
  });
}

// Row `r` of the state before token (t, r): the previous step's row in the
// packed buffer `packed` (row stride `ld`), or row r of `init` when the row
// has no earlier token in this direction.
template <typename T>
const T* previous_row(const PackedSteps& steps, bool reverse, int64_t t, int64_t r,
                      const T* packed, int64_t ld, const T* init, int64_t ld_init) {
  const int64_t T_ = steps.steps();
  if (!reverse && t > 0) return packed + (steps.offsets[t - 1] + r) * ld;
  if (reverse && t + 1 < T_ && r < steps.sizes[t + 1]) return packed + (steps.offsets[t + 1] + r) * ld;
  return init + r * ld_init;
}

// Walks the steps of one direction: from first to last (`forward_order`) or back.
// use_blas: per step, step(t) (a whole-step GEMM and its pointwise pass, for_rows);
// else each row block owns its rows for the whole walk (for_row_blocks) and
// rows(t, r0, r1) runs step t for the live rows [r0, r1) of the block.
template <typename Step, typename Rows>
void walk_steps(const PackedSteps& steps, int64_t batch, bool forward_order, bool use_blas,
                int64_t work_per_token, const Step& step, const Rows& rows) {
  const int64_t T_ = steps.steps();
  auto at_step = [&](int64_t s) { return forward_order ? s : T_ - 1 - s; };
  if (use_blas) {
    for (int64_t s = 0; s < T_; ++s) step(at_step(s));
    return;
  }
  for_row_blocks(steps, batch, work_per_token, [&](int64_t lo, int64_t hi) {
    for (int64_t s = 0; s < T_; ++s) {
      const int64_t t = at_step(s);
      const int64_t r1 = std::min(hi, steps.sizes[t]);
      if (r1 > lo) rows(t, lo, r1);
    }
  });
}

}  // namespace cpu
}  // namespace fastrnn
