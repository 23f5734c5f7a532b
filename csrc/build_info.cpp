// What this build of fastrnn._C is: `python -m fastrnn` prints it, and a user
// reporting a bug pastes it. Read from the compiler's own macros, so it cannot
// disagree with the code that was compiled.
#include <torch/library.h>
#include <torch/version.h>

#include <string>

namespace fastrnn {
namespace {

std::string flag(const char* name, bool on) {
  return std::string(name) + "=" + (on ? "1" : "0") + ";";
}

std::string build_info() {
  std::string info = std::string("torch=") + TORCH_VERSION + ";";
#ifdef FASTRNN_WITH_CUDA
  info += flag("cuda", true);
#else
  info += flag("cuda", false);
#endif
#ifdef __AVX2__
  info += flag("avx2", true);
#else
  info += flag("avx2", false);
#endif
#ifdef __AVX512F__
  info += flag("avx512", true);
#else
  info += flag("avx512", false);
#endif
#ifdef _OPENMP
  info += flag("openmp", true);
#else
  info += flag("openmp", false);
#endif
#if defined(__SANITIZE_ADDRESS__)
  info += flag("sanitize", true);
#else
  info += flag("sanitize", false);
#endif
#ifdef NDEBUG
  info += flag("debug", false);
#else
  info += flag("debug", true);
#endif
  info += std::string("compiler=") + __VERSION__;
  return info;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("build_info() -> str", &build_info);
}

}  // namespace fastrnn
