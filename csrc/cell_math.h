// Pointwise math of one recurrent cell, shared by the CPU and CUDA kernels.
//
// Every function handles one hidden unit `j` of one batch row; the time loop
// (csrc/cpu/recurrence_cpu.cpp) calls it for all units of all live rows.
// The gate order and formulas are torch.nn's:
//   LSTM  i, f, g, o              c' = f*c + i*g,  h' = o*tanh(c')
//   GRU   r, z, n                 n = tanh(x_n + r*(W_hn h + b_hn)), h' = (1-z)*n + z*h
//   RNN   tanh or relu            h' = act(x + W_hh h + b_hh)
// `gx` is the row of the input projection (W_ih x + b_ih), `gh` the row of
// the hidden projection W_hh h + b_hh; both hold kGates*H values.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastrnn {

// --- activations -----------------------------------------------------------
// float uses a branch-free Cephes polynomial (1-2 ulp) that compilers
// vectorise; libm's scalar expf/tanhf cost 20-40 ns each, measured at the AG News shape.
// double keeps libm: it serves gradcheck and 1e-10 comparisons, not speed.

// exp for the activations below, which only need it where 1 + exp(x) is not 1. Clamped
// (NaN passes through) so that the exponent n stays in [-126, 128]: n = 128 makes the scale
// 2^n the bits of +inf, so every x above 88.376 gives inf, as expf does from 88.72 (sigmoid(-100)
// must be 0, and inf * sigmoid(-inf) NaN, as in torch). Below -87.34 it returns about the smallest
// normal float instead of 0, which 1 + exp(x) cannot tell apart. Leaving out two selects for
// exact overflow and underflow makes an LSTM step's pointwise pass 12% faster.
C10_HOST_DEVICE inline float fast_exp(float x) {
  x = x > 89.0f ? 89.0f : x;
  x = x < -87.3365447504f ? -87.3365447504f : x;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (floorf does not vectorise).
  const float magic = 12582912.0f;
  float fx = (x * 1.44269504088896341f + magic) - magic;
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float z = x * x;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;
#ifdef __CUDA_ARCH__
  float scale = __int_as_float(bits);
#else
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
#endif
  return y * scale;
}

C10_HOST_DEVICE inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }
C10_HOST_DEVICE inline double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }

C10_HOST_DEVICE inline float tanh_act(float x) {
  // Small |x|: odd polynomial (1 - 2/(e^2x+1) would lose relative precision).
  float ax = fabsf(x);
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  float large = 1.0f - 2.0f / (fast_exp(2.0f * ax) + 1.0f);
  large = x < 0.0f ? -large : large;
  return ax < 0.625f ? small : large;
}
C10_HOST_DEVICE inline double tanh_act(double x) { return ::tanh(x); }

// relu keeps NaN (x < 0 is false for NaN), as torch.relu does.
template <typename T>
C10_HOST_DEVICE inline T relu_act(T x) { return x < T(0) ? T(0) : x; }

// --- cells -------------------------------------------------------------------
// A cell is a struct of traits and two functions; its traits are the one description
// of the cell that the CPU and CUDA loops, the buffers (csrc/recurrence.cpp), the op
// schemas and, through cell_table(), Python read (csrc/cells.h lists the cells).
//   kName          the ops' prefix: torch.ops.fastrnn.<kName>_forward / _backward
//   kGates (G)     gate blocks: input_proj and weight_hh have G*H columns / rows
//   kSaved (S)     values per hidden unit and token forward saves for backward
// and, where a cell differs from CellDefaults:
//   kHasCell       a cell state c next to h (c0 / c_n / grad_c_n in the ops)
//   kCellStateSlot the saved slot holding c_t (saved[kCellStateSlot*H + j]), which the
//                  backward loops read as the c_{t-1} of the next token
//   kSeparateHiddenGrad  dL/d(W_hh h + b_hh) differs from dL/d(input_proj) (dgh != dgx):
//                  a buffer of its own
//   kKeepsHiddenGrad  backward() leaves a part of dL/dh_{t-1} that does not flow through
//                  W_hh in dh, so the loops' dh (+)= dgh @ W_hh accumulates
//   kZoneoutStates K: the cell is Zoneout<Cell> (below), whose forward()/backward() read
//                  the token's zoneout row, K*H keep weights (h block, then c block); 0
//                  for a plain cell, which ignores that argument
//   kRowReduction  the step needs sums over the units of a row: the cell works a whole
//                  row at a time (forward_row()/backward_row() instead of forward()/
//                  backward()), as the LayerNorm cells below, which run in loops of their
//                  own (csrc/cpu/layer_norm_cpu.cpp, csrc/cuda/layer_norm_per_step.cuh)
//                  since their ops also take the norms' parameters. The plain cells' loops
//                  static_assert it is off.
// forward(): writes h (in place over h_prev) and, for LSTM, c; stores in
//   `saved` (kSaved*H values per token) what backward needs.
// backward(): `dh` holds dL/dh_t on entry and, on exit, the part of
//   dL/dh_{t-1} that does not flow through W_hh (zero unless kKeepsHiddenGrad); writes
//   dL/d(gx) to `dgx` and dL/d(gh) to `dgh` (the same unless kSeparateHiddenGrad).
// Both take the token's zoneout row `zo` last (nullptr unless kZoneoutStates).

struct CellDefaults {
  static constexpr bool kHasCell = false;
  static constexpr int kCellStateSlot = 0;  // read only with kHasCell
  static constexpr bool kSeparateHiddenGrad = false;
  static constexpr bool kKeepsHiddenGrad = false;
  static constexpr int kZoneoutStates = 0;
  static constexpr bool kRowReduction = false;
};

template <typename T>
struct LSTMCell : CellDefaults {
  static constexpr const char* kName = "lstm";
  static constexpr int kGates = 4;
  static constexpr int kSaved = 5;  // i f g o c
  static constexpr bool kHasCell = true;
  static constexpr int kCellStateSlot = 4;

  C10_HOST_DEVICE static inline void forward(int64_t j, int64_t H, const T* gx,
                                             const T* gh, T* h, T* c, T* saved,
                                             const T* /*zo*/) {
    T i = sigmoid(gx[j] + gh[j]);
    T f = sigmoid(gx[H + j] + gh[H + j]);
    T g = tanh_act(gx[2 * H + j] + gh[2 * H + j]);
    T o = sigmoid(gx[3 * H + j] + gh[3 * H + j]);
    T cy = f * c[j] + i * g;
    c[j] = cy;
    h[j] = o * tanh_act(cy);
    saved[j] = i;
    saved[H + j] = f;
    saved[2 * H + j] = g;
    saved[3 * H + j] = o;
    saved[kCellStateSlot * H + j] = cy;
  }

  // c_prev: the cell state before this token; dc: dL/dc_t in, dL/dc_{t-1} out.
  C10_HOST_DEVICE static inline void backward(int64_t j, int64_t H, const T* saved,
                                              const T* /*h_prev*/, const T* c_prev,
                                              T* dh, T* dc, T* dgx, T* /*dgh*/,
                                              const T* /*zo*/) {
    T i = saved[j], f = saved[H + j], g = saved[2 * H + j], o = saved[3 * H + j];
    T tc = tanh_act(saved[kCellStateSlot * H + j]);
    T dhy = dh[j];
    T dcy = dc[j] + dhy * o * (T(1) - tc * tc);
    dgx[j] = dcy * g * i * (T(1) - i);
    dgx[H + j] = dcy * c_prev[j] * f * (T(1) - f);
    dgx[2 * H + j] = dcy * i * (T(1) - g * g);
    dgx[3 * H + j] = dhy * tc * o * (T(1) - o);
    dc[j] = dcy * f;
    dh[j] = T(0);
  }
};

template <typename T>
struct GRUCell : CellDefaults {
  static constexpr const char* kName = "gru";
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;  // r z n hn (hn = W_hn h + b_hn)
  static constexpr bool kSeparateHiddenGrad = true;
  static constexpr bool kKeepsHiddenGrad = true;

  C10_HOST_DEVICE static inline void forward(int64_t j, int64_t H, const T* gx,
                                             const T* gh, T* h, T* /*c*/, T* saved,
                                             const T* /*zo*/) {
    T r = sigmoid(gx[j] + gh[j]);
    T z = sigmoid(gx[H + j] + gh[H + j]);
    T hn = gh[2 * H + j];
    T n = tanh_act(gx[2 * H + j] + r * hn);
    h[j] = (h[j] - n) * z + n;
    saved[j] = r;
    saved[H + j] = z;
    saved[2 * H + j] = n;
    saved[3 * H + j] = hn;
  }

  C10_HOST_DEVICE static inline void backward(int64_t j, int64_t H, const T* saved,
                                              const T* h_prev, const T* /*c_prev*/,
                                              T* dh, T* /*dc*/, T* dgx, T* dgh,
                                              const T* /*zo*/) {
    T r = saved[j], z = saved[H + j], n = saved[2 * H + j], hn = saved[3 * H + j];
    T dhy = dh[j];
    T dn = dhy * (T(1) - z) * (T(1) - n * n);
    T dz = dhy * (h_prev[j] - n) * z * (T(1) - z);
    T dr = dn * hn * r * (T(1) - r);
    dgx[j] = dr;
    dgx[H + j] = dz;
    dgx[2 * H + j] = dn;
    dgh[j] = dr;
    dgh[H + j] = dz;
    dgh[2 * H + j] = dn * r;
    dh[j] = dhy * z;
  }
};

template <typename T, bool Relu>
struct RNNCell : CellDefaults {
  static constexpr const char* kName = Relu ? "rnn_relu" : "rnn_tanh";
  static constexpr int kGates = 1;
  static constexpr int kSaved = 0;  // the output h is all backward needs

  C10_HOST_DEVICE static inline void forward(int64_t j, int64_t /*H*/, const T* gx,
                                             const T* gh, T* h, T* /*c*/, T* /*saved*/,
                                             const T* /*zo*/) {
    T pre = gx[j] + gh[j];
    h[j] = Relu ? relu_act(pre) : tanh_act(pre);
  }

  // For RNN `saved` points at the token's output row h_t.
  C10_HOST_DEVICE static inline void backward(int64_t j, int64_t /*H*/, const T* h_out,
                                              const T* /*h_prev*/, const T* /*c_prev*/,
                                              T* dh, T* /*dc*/, T* dgx, T* /*dgh*/,
                                              const T* /*zo*/) {
    T hy = h_out[j];
    // relu: torch's threshold_backward (out <= 0 ? 0 : grad), so a NaN output passes grad.
    T d = Relu ? (hy <= T(0) ? T(0) : dh[j]) : dh[j] * (T(1) - hy * hy);
    dgx[j] = d;
    dh[j] = T(0);
  }
};

// Zoneout (Krueger et al. 2016) around any cell: per token and hidden unit a keep weight
// z_h (z_c for the cell state), h_t = z_h*h_{t-1} + (1-z_h)*h~_t and
// c_t = z_c*c_{t-1} + (1-z_c)*c~_t, where h~_t, c~_t are the cell's own update. The
// weights come from `zo`, the token's row of the op's zoneout tensor [N, K*H] (h block,
// then c block): Bernoulli(p) draws in training, p at eval (fastrnn/functional.py).
// The output row is h_t, so saved gets what the inner backward read from it:
//   a cell state: one more slot, c_t (after zoneout), which the next token's backward
//     reads as c_{t-1} (kCellStateSlot); the inner LSTM backward keeps reading c~_t
//     (for tanh(c~_t)) from its own slot;
//   no saved values (RNN, whose backward reads h~_t from "saved" = its output row): one
//     slot, h~_t;
//   GRU: nothing more (its backward reads h_{t-1}, the previous output: after zoneout).
// Backward: dL/dh~_t = (1-z_h)*dL/dh_t into the inner backward, and z_h*dL/dh_t goes
// straight to dL/dh_{t-1} (kKeepsHiddenGrad); the same for c.
template <typename Cell>
struct Zoneout : Cell {
  static_assert(Cell::kZoneoutStates == 0, "zoneout of zoneout");
  static_assert(!Cell::kRowReduction, "no zoneout for a cell with a row reduction yet");
  static constexpr bool kSavesOutput = Cell::kSaved == 0;  // slot 0: h~_t
  static_assert(!(kSavesOutput && Cell::kHasCell), "a cell state and nothing saved");
  static constexpr int kSaved = Cell::kSaved + (Cell::kHasCell || kSavesOutput ? 1 : 0);
  static constexpr int kCellStateSlot = Cell::kHasCell ? Cell::kSaved : 0;
  static constexpr bool kKeepsHiddenGrad = true;
  static constexpr int kZoneoutStates = Cell::kHasCell ? 2 : 1;

  template <typename T>
  C10_HOST_DEVICE static inline void forward(int64_t j, int64_t H, const T* gx, const T* gh,
                                             T* h, T* c, T* saved, const T* zo) {
    const T h_prev = h[j];
    const T c_prev = Cell::kHasCell ? c[j] : T(0);
    Cell::forward(j, H, gx, gh, h, c, saved, zo);
    const T zh = zo[j], h_new = h[j];
    if (kSavesOutput) saved[j] = h_new;
    h[j] = zh * h_prev + (T(1) - zh) * h_new;
    if (Cell::kHasCell) {
      const T zc = zo[H + j];
      const T cy = zc * c_prev + (T(1) - zc) * c[j];
      c[j] = cy;
      saved[kCellStateSlot * H + j] = cy;
    }
  }

  template <typename T>
  C10_HOST_DEVICE static inline void backward(int64_t j, int64_t H, const T* saved,
                                              const T* h_prev, const T* c_prev, T* dh, T* dc,
                                              T* dgx, T* dgh, const T* zo) {
    const T zh = zo[j], dh_in = dh[j];
    dh[j] = (T(1) - zh) * dh_in;
    T zc = T(0), dc_in = T(0);
    if (Cell::kHasCell) {
      zc = zo[H + j], dc_in = dc[j];
      dc[j] = (T(1) - zc) * dc_in;
    }
    Cell::backward(j, H, saved, h_prev, c_prev, dh, dc, dgx, dgh, zo);
    dh[j] += zh * dh_in;
    if (Cell::kHasCell) dc[j] += zc * dc_in;
  }
};

// --- LayerNorm cells ------------------------------------------------------------
// Layer normalisation (Ba et al. 2016; haste's LayerNormLSTM) of the recurrent projection
// W_hh h over its G*H gate pre-activations (gain ln_hh_weight, bias ln_hh_bias) and, for
// the LSTM, of the cell state before its tanh (over H; ln_c_weight, ln_c_bias). The norm of
// the input projection is applied before the op (one layer_norm over every token). The
// carried cell state c_t is the un-normalised one, as in haste.
//   LayerNormLSTM  gates = gx + LN_hh(W_hh h); c' = f*c + i*g;  h' = o*tanh(LN_c(c'))
//   LayerNormGRU   r, z: sigmoid(gx + LN_hh(W_hh h)); n = tanh(x_n + r*LN_hh(W_hh h)_n);
//                  h' = (1-z)*n + z*h
// A step needs sums over the units of a row, so these cells work a whole row at a time
// (forward_row/backward_row; the plain cells work one unit). Each token saves kSaved*H
// values and kStats row statistics (a workspace row is kSaved*H + kStats wide).

constexpr double kLayerNormEps = 1e-5;  // torch.nn.LayerNorm's default

// The row loops below vectorise on the CPU (OpenMP simd, as the plain cells' unit loop in
// csrc/cpu/recurrence_cpu.cpp; a sum then adds in vector lanes, the same order every run
// and thread count); elsewhere (nvcc) the pragmas are left out.
#if defined(_OPENMP) && !defined(__CUDACC__)
#define FASTRNN_PRAGMA(text) _Pragma(#text)
#define FASTRNN_SIMD FASTRNN_PRAGMA(omp simd)
#define FASTRNN_SIMD_SUM(...) FASTRNN_PRAGMA(omp simd reduction(+ : __VA_ARGS__))
#else
#define FASTRNN_SIMD
#define FASTRNN_SIMD_SUM(...)
#endif

C10_HOST_DEVICE inline float inv_sqrt(float x) { return 1.0f / sqrtf(x); }
C10_HOST_DEVICE inline double inv_sqrt(double x) { return 1.0 / ::sqrt(x); }

// Mean and 1/sqrt(biased variance + eps) of x[0, n), two passes (as torch's layer_norm).
template <typename T>
C10_HOST_DEVICE inline void row_moments(int64_t n, const T* x, T& mean, T& rstd) {
  T sum = 0;
  FASTRNN_SIMD_SUM(sum)
  for (int64_t k = 0; k < n; ++k) sum += x[k];
  mean = sum / T(n);
  T var = 0;
  FASTRNN_SIMD_SUM(var)
  for (int64_t k = 0; k < n; ++k) var += (x[k] - mean) * (x[k] - mean);
  rstd = inv_sqrt(var / T(n) + T(kLayerNormEps));
}

// The norms' parameters in the compute type (without bias=False the biases are zeros: no
// branch in the vectorised loops).
template <typename T>
struct LayerNormParams {
  const T* hh_weight;
  const T* hh_bias;
  const T* c_weight;  // LSTM only
  const T* c_bias;
};

// dL/dx of y = LN(x) * gain + bias over n values, from dy, the normalised x (xhat) and rstd.
template <typename T>
C10_HOST_DEVICE inline void layer_norm_backward_row(int64_t n, const T* dy, const T* gain,
                                                    const T* xhat, T rstd, T* dx) {
  T s1 = 0, s2 = 0;
  FASTRNN_SIMD_SUM(s1, s2)
  for (int64_t k = 0; k < n; ++k) {
    const T g = dy[k] * gain[k];
    s1 += g;
    s2 += g * xhat[k];
  }
  s1 /= T(n);
  s2 /= T(n);
  FASTRNN_SIMD
  for (int64_t k = 0; k < n; ++k) dx[k] = rstd * (dy[k] * gain[k] - s1 - xhat[k] * s2);
}

// Normalises gh (one row of W_hh h, n values) in place: gh = LN_hh(gh), keeping the
// normalised values in xhat; returns rstd.
template <typename T>
C10_HOST_DEVICE inline T layer_norm_hh_row(int64_t n, const LayerNormParams<T>& p, T* gh,
                                           T* xhat) {
  T mean, rstd;
  row_moments(n, gh, mean, rstd);
  FASTRNN_SIMD
  for (int64_t k = 0; k < n; ++k) {
    xhat[k] = (gh[k] - mean) * rstd;
    gh[k] = xhat[k] * p.hh_weight[k] + p.hh_bias[k];
  }
  return rstd;
}

template <typename T>
struct LayerNormLSTMCell : CellDefaults {
  static constexpr const char* kName = "layer_norm_lstm";
  static constexpr int kGates = 4;
  static constexpr int kSaved = 9;  // i f g o c, then the normalised W_hh h (4 blocks)
  static constexpr int kStats = 3;  // rstd of W_hh h; mean and rstd of c
  static constexpr bool kHasCell = true;
  static constexpr int kCellStateSlot = 4;
  static constexpr bool kRowReduction = true;

  // gh: the row's W_hh h (overwritten); h, c: the state, updated in place.
  C10_HOST_DEVICE static inline void forward_row(int64_t H, const LayerNormParams<T>& p,
                                                 const T* gx, T* gh, T* h, T* c, T* saved) {
    T* stats = saved + kSaved * H;
    stats[0] = layer_norm_hh_row(4 * H, p, gh, saved + 5 * H);
    FASTRNN_SIMD
    for (int64_t j = 0; j < H; ++j) {
      T i = sigmoid(gx[j] + gh[j]);
      T f = sigmoid(gx[H + j] + gh[H + j]);
      T g = tanh_act(gx[2 * H + j] + gh[2 * H + j]);
      T o = sigmoid(gx[3 * H + j] + gh[3 * H + j]);
      c[j] = f * c[j] + i * g;
      saved[j] = i;
      saved[H + j] = f;
      saved[2 * H + j] = g;
      saved[3 * H + j] = o;
      saved[4 * H + j] = c[j];
    }
    T mean, rstd;
    row_moments(H, c, mean, rstd);
    FASTRNN_SIMD
    for (int64_t j = 0; j < H; ++j) {
      T y = (c[j] - mean) * rstd * p.c_weight[j] + p.c_bias[j];
      h[j] = saved[3 * H + j] * tanh_act(y);
    }
    stats[1] = mean;
    stats[2] = rstd;
  }

  // dh, dc: dL/dh_t, dL/dc_t in; dL/dc_{t-1} out in dc (dh is left for the GEMM to
  // overwrite). Writes dL/d(gates) to dgx (also the gradient of LN_hh's output),
  // dL/d(W_hh h) to draw, and per unit LN_c's output gradient (dy) and normalised c (chat),
  // which the parameter gradients sum over tokens.
  C10_HOST_DEVICE static inline void backward_row(int64_t H, const LayerNormParams<T>& p,
                                                  const T* saved, const T* /*h_prev*/,
                                                  const T* c_prev, T* dh, T* dc, T* dgx,
                                                  T* /*dpost*/, T* draw, T* dy, T* chat) {
    const T* stats = saved + kSaved * H;
    const T mean = stats[1], rstd = stats[2];
    T s1 = 0, s2 = 0;
    FASTRNN_SIMD_SUM(s1, s2)
    for (int64_t j = 0; j < H; ++j) {
      const T o = saved[3 * H + j];
      chat[j] = (saved[4 * H + j] - mean) * rstd;
      const T tc = tanh_act(chat[j] * p.c_weight[j] + p.c_bias[j]);
      dy[j] = dh[j] * o * (T(1) - tc * tc);
      dgx[3 * H + j] = dh[j] * tc * o * (T(1) - o);
      const T dchat = dy[j] * p.c_weight[j];
      s1 += dchat;
      s2 += dchat * chat[j];
    }
    s1 /= T(H);
    s2 /= T(H);
    FASTRNN_SIMD
    for (int64_t j = 0; j < H; ++j) {
      const T i = saved[j], f = saved[H + j], g = saved[2 * H + j];
      const T dcy = dc[j] + rstd * (dy[j] * p.c_weight[j] - s1 - chat[j] * s2);
      dgx[j] = dcy * g * i * (T(1) - i);
      dgx[H + j] = dcy * c_prev[j] * f * (T(1) - f);
      dgx[2 * H + j] = dcy * i * (T(1) - g * g);
      dc[j] = dcy * f;
    }
    layer_norm_backward_row(4 * H, dgx, p.hh_weight, saved + 5 * H, stats[0], draw);
  }
};

template <typename T>
struct LayerNormGRUCell : CellDefaults {
  static constexpr const char* kName = "layer_norm_gru";
  static constexpr int kGates = 3;
  static constexpr int kSaved = 6;  // r z n, then the normalised W_hh h (3 blocks)
  static constexpr int kStats = 1;  // rstd of W_hh h
  static constexpr bool kSeparateHiddenGrad = true;
  static constexpr bool kKeepsHiddenGrad = true;
  static constexpr bool kRowReduction = true;

  C10_HOST_DEVICE static inline void forward_row(int64_t H, const LayerNormParams<T>& p,
                                                 const T* gx, T* gh, T* h, T* /*c*/,
                                                 T* saved) {
    saved[kSaved * H] = layer_norm_hh_row(3 * H, p, gh, saved + 3 * H);
    FASTRNN_SIMD
    for (int64_t j = 0; j < H; ++j) {
      T r = sigmoid(gx[j] + gh[j]);
      T z = sigmoid(gx[H + j] + gh[H + j]);
      T n = tanh_act(gx[2 * H + j] + r * gh[2 * H + j]);
      h[j] = (h[j] - n) * z + n;
      saved[j] = r;
      saved[H + j] = z;
      saved[2 * H + j] = n;
    }
  }

  // dh: dL/dh_t in, the part of dL/dh_{t-1} that does not flow through W_hh out. dpost:
  // the gradient of LN_hh's output; draw: dL/d(W_hh h).
  C10_HOST_DEVICE static inline void backward_row(int64_t H, const LayerNormParams<T>& p,
                                                  const T* saved, const T* h_prev,
                                                  const T* /*c_prev*/, T* dh, T* /*dc*/,
                                                  T* dgx, T* dpost, T* draw, T* /*dy*/,
                                                  T* /*chat*/) {
    const T* xhat = saved + 3 * H;
    FASTRNN_SIMD
    for (int64_t j = 0; j < H; ++j) {
      const T r = saved[j], z = saved[H + j], n = saved[2 * H + j];
      const T hn = xhat[2 * H + j] * p.hh_weight[2 * H + j] + p.hh_bias[2 * H + j];
      const T dhy = dh[j];
      const T dn = dhy * (T(1) - z) * (T(1) - n * n);
      const T dz = dhy * (h_prev[j] - n) * z * (T(1) - z);
      const T dr = dn * hn * r * (T(1) - r);
      dgx[j] = dpost[j] = dr;
      dgx[H + j] = dpost[H + j] = dz;
      dgx[2 * H + j] = dn;
      dpost[2 * H + j] = dn * r;
      dh[j] = dhy * z;
    }
    layer_norm_backward_row(3 * H, dpost, p.hh_weight, xhat, saved[kSaved * H], draw);
  }
};

}  // namespace fastrnn
