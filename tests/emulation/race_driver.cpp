// Runs the emulated persistent kernels (persistent_emulator.cpp) forward and backward over
// a few launch shapes, for a build with -fsanitize=thread: every CUDA thread is a
// std::thread and __syncthreads a std::barrier, so a shared-memory access that no
// __syncthreads orders against another thread's write is a data race ThreadSanitizer
// reports. The values are random; tests/test_persistent_emulated.py checks them.
// Prints "launches N failures F"; F counts launches that wrote past their shared memory.
#include "persistent_emulator.cpp"

#include <cstdio>
#include <random>
#include <vector>

int main() {
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  auto random = [&](int64_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(rng);
    return v;
  };
  const std::vector<std::vector<int64_t>> patterns = {{6, 5, 5, 3, 1}, {5, 2, 2, 2, 1, 1, 1}};
  int launches = 0, failures = 0;
  for (int cell = 0; cell < kCellCount; ++cell) {
    for (const auto& sizes : patterns) {
      // kPersistentMaxRows: a last block with fewer rows than the others
      for (int rows : {1, kPersistentMaxRows}) {
        for (int reverse : {0, 1}) {
          const int zoneout = reverse;  // Zoneout<Cell> too, at no extra launches
          const CellInfo info = cell_info(static_cast<CellKind>(cell), zoneout);
          const int64_t G = info.gates, S = info.saved;
          const int H = 9, threads = 32;  // LSTM and GRU: fewer threads than gate units
          int64_t N = 0;
          for (int64_t size : sizes) N += size;
          const int64_t B = sizes[0];
          auto gx = random(N * G * H), w = random(G * H * H), b = random(G * H);
          auto h0 = random(B * H), c0 = random(B * H);
          auto keep = random(N * (info.has_cell ? 2 : 1) * H);
          for (auto& z : keep) z = z < 0 ? 0.0f : 1.0f;
          std::vector<float> out(N * H), saved(N * S * H), h_n(B * H), c_n(B * H);
          Args f{};
          f.steps = static_cast<int64_t>(sizes.size());
          f.batch = B;
          f.H = H;
          f.rows = rows;
          f.threads = threads;
          f.reverse = reverse;
          f.keep_saved = 1;
          f.sizes = sizes.data();
          f.external_runs = reverse;  // both homes of the step table
          f.a = gx.data(), f.w = w.data(), f.b = b.data(), f.h0 = h0.data(), f.c0 = c0.data();
          f.out = out.data(), f.saved = saved.data(), f.h_n = h_n.data(), f.c_n = c_n.data();
          f.zoneout = zoneout ? keep.data() : nullptr;
          failures += !emulate(1, cell, 0, 0, &f);
          auto gout = random(N * H), dh = random(B * H), dc = random(B * H);
          std::vector<float> dgx(N * G * H), dgh(N * G * H), h_prev(N * H), dh0(B * H),
              dc0(B * H);
          Args g = f;
          g.a = gout.data(), g.out_in = out.data(), g.saved_in = saved.data();
          g.h_n = dh.data(), g.c_n = dc.data(), g.dh0 = dh0.data(), g.dc0 = dc0.data();
          g.dgx = dgx.data(), g.dgh = dgh.data(), g.h_prev = h_prev.data();
          failures += !emulate(0, cell, 0, 0, &g);
          launches += 2;
        }
      }
    }
  }
  std::printf("launches %d failures %d\n", launches, failures);
  return failures == 0 ? 0 : 1;
}
