// The "exact" CPU target: per-element float64 sums with the shared maths of kernels/stats_math.hpp,
// any CPU, no vector code. It is the reference the SIMD targets are tested against, not a fallback:
// every CPU has at least its architecture's baseline SIMD target.
#include "simd_targets.hpp"

namespace gp::cpu {
namespace {

template <int DA, int DB, bool kPair>
void stretch_exact(const void* a, const void* b, i64 start, i64 len, Sums& s, u64* hist) {
  for (i64 i = start; i < start + len; ++i) {
    double x = load_element(a, DA, i);
    if (kPair) x -= load_element(b, DB, i);
    int bin = sums_add(s, x);
    if (hist && bin >= 0) ++hist[bin];
  }
}

template <int DA>
void stretch_exact_pair(const TensorDesc& t, i64 start, i64 len, Sums& s, u64* hist) {
  const void* a = (const void*)t.a;
  const void* b = (const void*)t.b;
  switch (t.dtype_b) {
    case kF32: return stretch_exact<DA, kF32, true>(a, b, start, len, s, hist);
    case kF16: return stretch_exact<DA, kF16, true>(a, b, start, len, s, hist);
    case kBF16: return stretch_exact<DA, kBF16, true>(a, b, start, len, s, hist);
    default: return stretch_exact<DA, kF64, true>(a, b, start, len, s, hist);
  }
}

void stretch_exact_any(const TensorDesc& t, i64 start, i64 len, Sums& s, u64* hist) {
  const void* a = (const void*)t.a;
  if (t.b) {
    switch (t.dtype_a) {
      case kF32: return stretch_exact_pair<kF32>(t, start, len, s, hist);
      case kF16: return stretch_exact_pair<kF16>(t, start, len, s, hist);
      case kBF16: return stretch_exact_pair<kBF16>(t, start, len, s, hist);
      default: return stretch_exact_pair<kF64>(t, start, len, s, hist);
    }
  }
  switch (t.dtype_a) {
    case kF32: return stretch_exact<kF32, kF32, false>(a, nullptr, start, len, s, hist);
    case kF16: return stretch_exact<kF16, kF16, false>(a, nullptr, start, len, s, hist);
    case kBF16: return stretch_exact<kBF16, kBF16, false>(a, nullptr, start, len, s, hist);
    default: return stretch_exact<kF64, kF64, false>(a, nullptr, start, len, s, hist);
  }
}

// Statistics of elements [start, start+len) of one input, shifted by its first element.
Partial stretch(const TensorDesc& t, i64 start, i64 len, u64* hist) {
  const double first = len > 0 ? load_input((const void*)t.a, t.dtype_a, (const void*)t.b, t.dtype_b, start) : 0.0;
  Sums s;
  sums_init(s, shift_for(first));
  stretch_exact_any(t, start, len, s, hist);
  return partial_from_sums(s);
}

double read_floor(const float* data, i64 n) {
  double sum = 0;
  for (i64 i = 0; i < n; ++i) sum += data[i];
  return sum;
}

}  // namespace

const Kernels kExactKernels = {&stretch, &read_floor};

}  // namespace gp::cpu
