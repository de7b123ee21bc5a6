// The per-instruction-set kernel tables of the CPU pass. Each target_*.cpp compiles the same
// kernel source (simd_kernel.inl) with its own ISA flags and exports one table; cpu_dispatch.cpp
// picks the best table this CPU supports at run time (never -march=native at build time).
#pragma once

#include "../../kernels/work_plan.hpp"

namespace gp::cpu {

struct Kernels {
  // Statistics of elements [start, start+len) of one input; hist: kHistBins counts to add to, or null.
  Partial (*stretch)(const TensorDesc& t, i64 start, i64 len, u64* hist);
  // Sums n float32 values as fast as this ISA reads memory (the benchmarks' read floor).
  double (*read_floor)(const float* data, i64 n);
};

// The reference: per-element float64 sums (kernels/stats_math.hpp), on any CPU.
extern const Kernels kExactKernels;

#define GP_DECLARE_TARGET(ns) \
  namespace ns {              \
  extern const Kernels kernels; \
  }
#if defined(__x86_64__) || defined(_M_X64)
GP_DECLARE_TARGET(sse2)
GP_DECLARE_TARGET(sse4)
GP_DECLARE_TARGET(avx2)
GP_DECLARE_TARGET(avx512)
GP_DECLARE_TARGET(avx512_vbmi)
#elif defined(__aarch64__)
GP_DECLARE_TARGET(neon)
GP_DECLARE_TARGET(sve256)
#else
GP_DECLARE_TARGET(generic)
#endif
#undef GP_DECLARE_TARGET

}  // namespace gp::cpu
