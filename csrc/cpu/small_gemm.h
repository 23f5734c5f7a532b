// Register-blocked row-major GEMM for the small per-step products of the
// recurrence (a few to a few hundred rows times a weight that fits in cache).
// At the AG News shape one at::mm costs ~15 us of dispatch for ~1 us of math, so the
// time loop calls this on raw pointers instead.
//
//   C[M, N] = (accumulate ? C : bias broadcast over rows, or 0) + A[M, K] @ B[K, N]
//
// Each row of C is computed by the same instruction sequence whatever the
// row blocking or thread count, so results are bitwise reproducible.
#pragma once

#include <cstdint>
#include <cstring>

namespace fastrnn {
namespace cpu {

// One SIMD register: 64 bytes where the build machine has AVX-512 (setup.py then
// compiles with -mavx512f), else 32 (AVX2).
#ifdef __AVX512F__
constexpr int64_t kSimdBytes = 64;
#else
constexpr int64_t kSimdBytes = 32;
#endif

template <typename T>
struct SimdVec {
  typedef T type __attribute__((vector_size(kSimdBytes)));
  static constexpr int64_t kLanes = kSimdBytes / sizeof(T);
};

template <typename T>
inline typename SimdVec<T>::type load_vec(const T* p) {
  typename SimdVec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store_vec(T* p, typename SimdVec<T>::type v) {
  std::memcpy(p, &v, sizeof(v));
}

// Rows [m0, m0 + MR) of C, columns [n0, n0 + 2 * lanes).
template <typename T, int MR>
inline void gemm_tile(int64_t K, const T* __restrict A, int64_t lda,
                      const T* __restrict B, int64_t ldb, T* __restrict C, int64_t ldc,
                      const T* __restrict bias, bool accumulate, int64_t n0) {
  using V = typename SimdVec<T>::type;
  constexpr int64_t L = SimdVec<T>::kLanes;
  V acc0[MR], acc1[MR];
  for (int r = 0; r < MR; ++r) {
    if (accumulate) {
      acc0[r] = load_vec(C + r * ldc + n0);
      acc1[r] = load_vec(C + r * ldc + n0 + L);
    } else if (bias) {
      acc0[r] = load_vec(bias + n0);
      acc1[r] = load_vec(bias + n0 + L);
    } else {
      acc0[r] = V{} ;
      acc1[r] = V{};
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    V b0 = load_vec(B + k * ldb + n0);
    V b1 = load_vec(B + k * ldb + n0 + L);
    for (int r = 0; r < MR; ++r) {
      T a = A[r * lda + k];
      acc0[r] += a * b0;
      acc1[r] += a * b1;
    }
  }
  for (int r = 0; r < MR; ++r) {
    store_vec(C + r * ldc + n0, acc0[r]);
    store_vec(C + r * ldc + n0 + L, acc1[r]);
  }
}

// Columns [n0, N) not covered by full tiles, one row at a time.
template <typename T>
inline void gemm_tail_columns(int64_t K, int64_t N, const T* __restrict A, int64_t lda,
                              const T* __restrict B, int64_t ldb, T* __restrict C,
                              int64_t ldc, const T* __restrict bias, bool accumulate,
                              int64_t rows, int64_t n0) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = n0; n < N; ++n) {
      T acc = accumulate ? C[r * ldc + n] : (bias ? bias[n] : T(0));
      for (int64_t k = 0; k < K; ++k) acc += A[r * lda + k] * B[k * ldb + n];
      C[r * ldc + n] = acc;
    }
  }
}

template <typename T, int MR>
inline void gemm_row_block(int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                           int64_t ldb, T* C, int64_t ldc, const T* bias, bool accumulate) {
  constexpr int64_t NR = 2 * SimdVec<T>::kLanes;
  int64_t n0 = 0;
  for (; n0 + NR <= N; n0 += NR) {
    gemm_tile<T, MR>(K, A, lda, B, ldb, C, ldc, bias, accumulate, n0);
  }
  gemm_tail_columns(K, N, A, lda, B, ldb, C, ldc, bias, accumulate, MR, n0);
}

// Rows [row_begin, row_end) of C.
template <typename T>
inline void small_gemm_rows(int64_t row_begin, int64_t row_end, int64_t N, int64_t K,
                            const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                            int64_t ldc, const T* bias, bool accumulate) {
  constexpr int MR = 4;
  int64_t m = row_begin;
  for (; m + MR <= row_end; m += MR) {
    gemm_row_block<T, MR>(N, K, A + m * lda, lda, B, ldb, C + m * ldc, ldc, bias, accumulate);
  }
  // The last 1-3 rows in one block: row by row, each tile's 2 accumulators would wait on
  // the FMA latency (measured: 11 rows x 32 x 128 in 1.2 us instead of 1.5).
  A += m * lda;
  C += m * ldc;
  switch (row_end - m) {
    case 3: gemm_row_block<T, 3>(N, K, A, lda, B, ldb, C, ldc, bias, accumulate); break;
    case 2: gemm_row_block<T, 2>(N, K, A, lda, B, ldb, C, ldc, bias, accumulate); break;
    case 1: gemm_row_block<T, 1>(N, K, A, lda, B, ldb, C, ldc, bias, accumulate); break;
    default: break;
  }
}

// C[M, N] = (accumulate ? C : bias broadcast over rows, or 0) + A[M, K] @ W[N, K]^T, with W
// row-major as a layer stores it: each output is the dot product of two contiguous rows, so
// W needs no transposed copy. For calls with few rows in all (one-step calls, the decoder and
// streaming pattern), where that copy would cost as much as the product itself. Every output
// is one accumulation in one order whatever the row range, so results are bitwise
// reproducible across threads (not across the two kernels: their sums run in other orders).
template <typename T>
inline T dot_row(int64_t K, const T* __restrict a, const T* __restrict w) {
  using V = typename SimdVec<T>::type;
  constexpr int64_t L = SimdVec<T>::kLanes;
  V acc0{}, acc1{};
  int64_t k = 0;
  for (; k + 2 * L <= K; k += 2 * L) {
    acc0 += load_vec(a + k) * load_vec(w + k);
    acc1 += load_vec(a + k + L) * load_vec(w + k + L);
  }
  for (; k + L <= K; k += L) acc0 += load_vec(a + k) * load_vec(w + k);
  acc0 += acc1;
  T sum = 0;
  for (int64_t l = 0; l < L; ++l) sum += acc0[l];
  for (; k < K; ++k) sum += a[k] * w[k];
  return sum;
}

template <typename T>
inline void small_gemm_nt_rows(int64_t row_begin, int64_t row_end, int64_t N, int64_t K,
                               const T* A, int64_t lda, const T* W, int64_t ldw, T* C,
                               int64_t ldc, const T* bias, bool accumulate) {
  for (int64_t m = row_begin; m < row_end; ++m) {
    const T* a = A + m * lda;
    T* c = C + m * ldc;
    for (int64_t n = 0; n < N; ++n) {
      const T init = accumulate ? c[n] : (bias ? bias[n] : T(0));
      c[n] = init + dot_row<T>(K, a, W + n * ldw);
    }
  }
}

}  // namespace cpu
}  // namespace fastrnn
