// Run-time choice of the CPU pass's SIMD target: the best compiled target this CPU supports,
// unless a test or benchmark forces another (set_cpu_target).
#pragma once

#include <string>
#include <vector>

#include "simd_targets.hpp"

namespace gp::cpu {

struct CpuTarget {
  std::string name;      // "exact", "sse2", "sse4", "avx2", "avx512", "avx512-vbmi", "neon", "sve256", ...
  std::string needs;     // the CPU features it needs, in words
  bool supported;        // whether this CPU has them
};

// Every target this build contains, from the reference (exact) to the widest.
std::vector<CpuTarget> cpu_targets();
// The best supported target's name, and why it was chosen (what the next one up lacks).
std::string best_cpu_target();
std::string cpu_target_reason();
// The target the pass takes now.
std::string cpu_target();
// Forces a target by name ("best" for the default); returns an error message, empty on success.
std::string set_cpu_target(const std::string& name);
const Kernels& current_kernels();

}  // namespace gp::cpu
