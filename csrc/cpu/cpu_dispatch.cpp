// Fills the target table from what this CPU reports at run time: __builtin_cpu_supports (x86,
// which also checks that the OS saves the AVX/AVX-512 registers), getauxval(AT_HWCAP) and the SVE
// vector length from prctl (aarch64).
#include "cpu_dispatch.hpp"

#include <atomic>
#include <cstdlib>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#include <sys/prctl.h>
#endif

namespace gp::cpu {
namespace {

struct Target {
  const char* name;
  const char* needs;
  const Kernels* kernels;
  bool supported;
};

#if defined(__aarch64__)
// The hardware SVE vector length in bytes, 0 without SVE.
int sve_vector_bytes() {
#if defined(__linux__)
#ifndef HWCAP_SVE
#define HWCAP_SVE (1 << 22)
#endif
#ifndef PR_SVE_GET_VL
#define PR_SVE_GET_VL 51
#define PR_SVE_VL_LEN_MASK 0xffff
#endif
  if (!(getauxval(AT_HWCAP) & HWCAP_SVE)) return 0;
  const int vl = prctl(PR_SVE_GET_VL);
  return vl < 0 ? 0 : (vl & PR_SVE_VL_LEN_MASK);
#else
  return 0;
#endif
}
#endif

std::vector<Target> make_targets() {
  std::vector<Target> t;
  t.push_back({"exact", "any CPU (per-element float64 reference)", &kExactKernels, true});
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const bool sse4 = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool vbmi = avx512 && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bitalg") &&
                    __builtin_cpu_supports("gfni");
  t.push_back({"sse2", "x86-64 (SSE2)", &sse2::kernels, true});
  t.push_back({"sse4", "SSE4.2 and POPCNT (x86-64-v2)", &sse4::kernels, sse4});
  t.push_back({"avx2", "AVX2, FMA and F16C (x86-64-v3)", &avx2::kernels, avx2});
  t.push_back({"avx512", "AVX-512 F, BW, DQ and VL", &avx512::kernels, avx512});
  t.push_back({"avx512-vbmi", "AVX-512 F, BW, DQ, VL with VBMI, BITALG and GFNI", &avx512_vbmi::kernels, vbmi});
#elif defined(__aarch64__)
  t.push_back({"neon", "aarch64 (NEON)", &neon::kernels, true});
  t.push_back({"sve256", "SVE with a 256-bit vector length", &sve256::kernels, sve_vector_bytes() == 32});
#else
  t.push_back({"generic", "this architecture (compiler-lowered vectors)", &generic::kernels, true});
#endif
  return t;
}

const std::vector<Target>& targets() {
  static const std::vector<Target> table = make_targets();
  return table;
}

int best_index() {
  const auto& t = targets();
  int best = 0;
  for (int i = 0; i < (int)t.size(); ++i)
    if (t[i].supported) best = i;
  return best;
}

// GRADPROBE_CPU_TARGET=<name> sets the default target for the process (benchmarks; reproducing
// what a user's CPU runs). A name this CPU cannot take is ignored, and the reason says so.
struct EnvironmentChoice {
  int index = -1;
  std::string note;
};

const EnvironmentChoice& environment_choice() {
  static const EnvironmentChoice choice = [] {
    EnvironmentChoice c;
    const char* value = std::getenv("GRADPROBE_CPU_TARGET");
    if (value == nullptr || *value == '\0' || std::string(value) == "best") return c;
    const std::string name(value);
    const auto& t = targets();
    for (int i = 0; i < (int)t.size(); ++i) {
      if (name != t[i].name) continue;
      if (t[i].supported) {
        c.index = i;
      } else {
        c.note = "; GRADPROBE_CPU_TARGET=" + name + " ignored: this CPU lacks " + t[i].needs;
      }
      return c;
    }
    c.note = "; GRADPROBE_CPU_TARGET=" + name + " ignored: not a compiled target";
    return c;
  }();
  return choice;
}

int default_index() {
  const int chosen = environment_choice().index;
  return chosen >= 0 ? chosen : best_index();
}

std::atomic<int> g_target{-1};  // -1: not forced at run time (the default: environment, else best)

int current_index() {
  const int forced = g_target.load(std::memory_order_relaxed);
  return forced >= 0 ? forced : default_index();
}

}  // namespace

std::vector<CpuTarget> cpu_targets() {
  std::vector<CpuTarget> out;
  for (const Target& t : targets()) out.push_back({t.name, t.needs, t.supported});
  return out;
}

std::string best_cpu_target() { return targets()[best_index()].name; }

std::string cpu_target_reason() {
  const auto& t = targets();
  const int best = best_index(), now = current_index();
  std::string reason = std::string("cpu target ") + t[now].name;
  if (now == best) {
    reason += ": the best of the compiled targets this CPU supports";
    if (best + 1 < (int)t.size()) reason += std::string(" (") + t[best + 1].name + " needs " + t[best + 1].needs + ")";
  } else {
    reason += now == environment_choice().index ? ": chosen by GRADPROBE_CPU_TARGET" : ": forced at run time";
    reason += std::string(" (the best here is ") + t[best].name + ")";
  }
  if (environment_choice().index < 0) reason += environment_choice().note;  // an ignored request
  return reason;
}

std::string cpu_target() { return targets()[current_index()].name; }

std::string set_cpu_target(const std::string& name) {
  if (name == "best") {
    g_target.store(best_index(), std::memory_order_relaxed);
    return "";
  }
  const auto& t = targets();
  std::string known;
  for (int i = 0; i < (int)t.size(); ++i) {
    if (name == t[i].name) {
      if (!t[i].supported) return "this CPU cannot take the '" + name + "' cpu path: it needs " + t[i].needs;
      g_target.store(i, std::memory_order_relaxed);
      return "";
    }
    known += std::string(i ? ", " : "") + t[i].name;
  }
  return "cpu path must be one of " + known + " or best, not '" + name + "'";
}

const Kernels& current_kernels() {
  return *targets()[current_index()].kernels;
}

}  // namespace gp::cpu
