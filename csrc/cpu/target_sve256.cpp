// aarch64 SVE with a 256-bit vector length (Graviton3, A64FX at 512 excluded): 8 float lanes in one z register.
// Built with -msve-vector-bits=256, so it runs only where the hardware vector length is 256 bits
// (cpu_dispatch.cpp checks it with prctl(PR_SVE_GET_VL) before offering this target).
// The shared kernel source (simd_wide.inl, simd_kernel.inl) compiled for this target's ISA; the
// flags come from CMakeLists.txt (this file only), so no other code depends on them.
#define GP_ISA_LOCAL 1
#include "simd_targets.hpp"

namespace gp::cpu::sve256 {
namespace {
#define GP_LANES 8
#include "simd_wide.inl"
#include "simd_kernel.inl"
}  // namespace

extern const Kernels kernels = {&stretch_lanes, &read_floor_lanes};

}  // namespace gp::cpu::sve256
