// Other architectures: the kernel source with the compiler's own vector lowering.
// The shared kernel source (simd_wide.inl, simd_kernel.inl) compiled for this target's ISA; the
// flags come from CMakeLists.txt (this file only), so no other code depends on them.
#define GP_ISA_LOCAL 1
#include "simd_targets.hpp"

namespace gp::cpu::generic {
namespace {
#define GP_LANES 4
#include "simd_wide.inl"
#include "simd_kernel.inl"
}  // namespace

extern const Kernels kernels = {&stretch_lanes, &read_floor_lanes};

}  // namespace gp::cpu::generic
