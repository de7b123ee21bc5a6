// aarch64 NEON (every aarch64 CPU: Graviton, Grace, Apple silicon): 8 float lanes (two q registers).
// The shared kernel source (simd_wide.inl, simd_kernel.inl) compiled for this target's ISA; the
// flags come from CMakeLists.txt (this file only), so no other code depends on them.
#define GP_ISA_LOCAL 1
#include "simd_targets.hpp"

namespace gp::cpu::neon {
namespace {
#define GP_LANES 8
#include "simd_wide.inl"
#include "simd_kernel.inl"
}  // namespace

extern const Kernels kernels = {&stretch_lanes, &read_floor_lanes};

}  // namespace gp::cpu::neon
