// Per-element statistics maths shared by the CPU twin, the CUDA kernels and the
// run-time (NVRTC/CuPy) build. No standard headers: NVRTC has none.
//
// Numerics: values are accumulated in float64 as sums shifted by a value of the
// same stretch of data (so 1e4 + N(0,1) keeps its variance), each stretch is
// turned into (count, mean, M2) and stretches are merged with Chan's formula.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define GP_HD __host__ __device__ __forceinline__
#elif defined(GP_ISA_LOCAL)
// A translation unit compiled for one instruction set (csrc/cpu/target_*.cpp): its copies stay
// local, so the linker cannot hand an AVX2-compiled copy to code that runs on a baseline CPU.
#define GP_HD static inline
#else
#define GP_HD inline
#endif

namespace gp {

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;

// Histogram of binary exponents of |x| over finite non-zero values.
// Bin 0: |x| < 2^kHistExpMin; bin j in [1, kHistBins-2]: 2^(j-1+kHistExpMin) <= |x| < 2^(j+kHistExpMin);
// last bin: |x| >= 2^kHistExpMax.
constexpr int kHistExpMin = -64;
constexpr int kHistExpMax = 64;
constexpr int kHistBins = kHistExpMax - kHistExpMin + 2;

// Layout of one row of the output table (float64).
enum Field {
  kNumel = 0, kFinite, kL2, kL1, kMin, kMax, kMean, kStd, kZeros, kNans, kInfs, kNumFields
};

// Input dtype codes, exported to Python by csrc/table_args.hpp (register_constants).
enum DType { kF32 = 0, kF16 = 1, kBF16 = 2, kF64 = 3 };

GP_HD double inf_value() { return 1.0 / 0.0; }
GP_HD double nan_value() { return 0.0 / 0.0; }

GP_HD u64 double_bits(double x) {
#if defined(__CUDA_ARCH__)
  return (u64)__double_as_longlong(x);
#else
  u64 b;
  __builtin_memcpy(&b, &x, sizeof b);
  return b;
#endif
}

GP_HD bool is_finite(double x) { return ((double_bits(x) >> 52) & 0x7ff) != 0x7ff; }
GP_HD double abs_value(double x) { return x < 0 ? -x : x; }
GP_HD double min_value(double a, double b) { return b < a ? b : a; }
GP_HD double max_value(double a, double b) { return b > a ? b : a; }

GP_HD double sqrt_value(double x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);
#else
  return __builtin_sqrt(x);
#endif
}

// Clamps an unbiased binary exponent into its histogram bin.
GP_HD int hist_bin_of_exponent(int exponent) {
  int bin = exponent - kHistExpMin + 1;
  return bin < 0 ? 0 : (bin > kHistBins - 1 ? kHistBins - 1 : bin);
}

// Bin of a finite non-zero value (any magnitude, float64 subnormals included).
GP_HD int hist_bin(double x) {
  int biased = (int)((double_bits(x) >> 52) & 0x7ff);
  return biased == 0 ? 0 : hist_bin_of_exponent(biased - 1023);
}

// Bin from the raw 8-bit exponent field of a float32 (subnormals land in bin 0).
GP_HD int hist_bin_of_f32_exponent_field(int field) {
  return field == 0 ? 0 : hist_bin_of_exponent(field - 127);
}

// Running sums over one stretch of data that shares one shift.
struct Sums {
  double shift;
  double n, s1, s2, l1, mn, mx, zeros, nans, infs;
};

GP_HD void sums_init(Sums& s, double shift) {
  s.shift = shift;
  s.n = s.s1 = s.s2 = s.l1 = s.zeros = s.nans = s.infs = 0;
  s.mn = inf_value();
  s.mx = -inf_value();
}

// A shift taken from the data keeps the shifted sums small; non-finite data shifts by 0.
GP_HD double shift_for(double first_value) { return is_finite(first_value) ? first_value : 0.0; }

// Adds one element; returns its histogram bin, or -1 when it belongs to no bin (zero, NaN, Inf).
GP_HD int sums_add(Sums& s, double x) {
  if (x != x) { s.nans += 1; return -1; }
  if (!is_finite(x)) { s.infs += 1; return -1; }
  double d = x - s.shift;
  s.n += 1;
  s.s1 += d;
  s.s2 += d * d;
  s.l1 += abs_value(x);
  s.mn = min_value(s.mn, x);
  s.mx = max_value(s.mx, x);
  if (x == 0) { s.zeros += 1; return -1; }
  return hist_bin(x);
}

// Adds another stretch's sums taken with the same shift.
GP_HD void sums_add_sums(Sums& a, const Sums& b) {
  a.n += b.n; a.s1 += b.s1; a.s2 += b.s2; a.l1 += b.l1;
  a.mn = min_value(a.mn, b.mn); a.mx = max_value(a.mx, b.mx);
  a.zeros += b.zeros; a.nans += b.nans; a.infs += b.infs;
}

// Statistics of a stretch in mergeable form: count, mean and M2 (sum of squared deviations).
struct Partial {
  double n, mean, m2, l1, mn, mx, zeros, nans, infs;
};
constexpr int kPartialDoubles = 9;

GP_HD void partial_init(Partial& p) {
  p.n = p.mean = p.m2 = p.l1 = p.zeros = p.nans = p.infs = 0;
  p.mn = inf_value();
  p.mx = -inf_value();
}

GP_HD Partial partial_from_sums(const Sums& s) {
  Partial p;
  p.n = s.n;
  p.mean = s.n > 0 ? s.shift + s.s1 / s.n : 0.0;
  double m2 = s.n > 0 ? s.s2 - s.s1 * (s.s1 / s.n) : 0.0;
  // float64 data beyond ~1e154 overflows the sum of squares (inf - inf is NaN): report the overflow
  // as inf, never as a variance of 0. The CPU engine then recomputes the row rescaled (stats_cpu.cpp).
  p.m2 = m2 != m2 ? inf_value() : (m2 > 0 ? m2 : 0.0);
  p.l1 = s.l1; p.mn = s.mn; p.mx = s.mx;
  p.zeros = s.zeros; p.nans = s.nans; p.infs = s.infs;
  return p;
}

// Chan et al. parallel merge: exact in exact arithmetic, stable in float64.
GP_HD void partial_merge(Partial& a, const Partial& b) {
  double n = a.n + b.n;
  if (b.n > 0) {
    if (a.n == 0) {
      a.mean = b.mean;
      a.m2 = b.m2;
    } else {
      double delta = b.mean - a.mean;
      a.mean += delta * (b.n / n);
      a.m2 += b.m2 + delta * delta * (a.n * (b.n / n));
    }
  }
  a.n = n;
  a.l1 += b.l1;
  a.mn = min_value(a.mn, b.mn);
  a.mx = max_value(a.mx, b.mx);
  a.zeros += b.zeros; a.nans += b.nans; a.infs += b.infs;
}

// Writes one output row. Over finite values only; with none, min/max/mean/std are NaN.
GP_HD void partial_finalize(const Partial& p, double* row) {
  row[kNumel] = p.n + p.nans + p.infs;
  row[kFinite] = p.n;
  row[kL1] = p.l1;
  row[kZeros] = p.zeros;
  row[kNans] = p.nans;
  row[kInfs] = p.infs;
  if (p.n > 0) {
    row[kL2] = sqrt_value(p.m2 + p.n * p.mean * p.mean);
    row[kMin] = p.mn;
    row[kMax] = p.mx;
    row[kMean] = p.mean;
    row[kStd] = sqrt_value(p.m2 / p.n);
  } else {
    row[kL2] = 0;
    row[kMin] = row[kMax] = row[kMean] = row[kStd] = nan_value();
  }
}

GP_HD void partial_store(const Partial& p, double* out) {
  out[0] = p.n; out[1] = p.mean; out[2] = p.m2; out[3] = p.l1; out[4] = p.mn;
  out[5] = p.mx; out[6] = p.zeros; out[7] = p.nans; out[8] = p.infs;
}

GP_HD Partial partial_load(const double* in) {
  Partial p;
  p.n = in[0]; p.mean = in[1]; p.m2 = in[2]; p.l1 = in[3]; p.mn = in[4];
  p.mx = in[5]; p.zeros = in[6]; p.nans = in[7]; p.infs = in[8];
  return p;
}

GP_HD double double_from_bits(u64 bits) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double((long long)bits);
#else
  double x;
  __builtin_memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

// A float32 (by its bits) widened exactly to float64 with integer operations only. Not a
// float-to-double conversion: CuPy compiles run-time kernels with -ftz=true, under which that
// conversion flushes float32 subnormals to zero (they would count as zeros).
GP_HD double f32_bits_to_double(u32 bits) {
  u64 sign = (u64)(bits >> 31) << 63;
  u32 exponent = (bits >> 23) & 0xff, mantissa = bits & 0x7fffff;
  if (exponent == 0) {  // zero or subnormal: m * 2^-149
    double v = (double)mantissa * 0x1p-149;
    return sign ? -v : v;
  }
  u64 wide_exponent = exponent == 0xff ? 0x7ff : exponent - 127 + 1023;
  return double_from_bits(sign | (wide_exponent << 52) | ((u64)mantissa << 29));
}

// Element loads as float64 for every supported dtype.
GP_HD double float_from_bits(u32 bits) {
#if defined(__CUDA_ARCH__)
  return f32_bits_to_double(bits);
#else
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return (double)f;
#endif
}

GP_HD double bf16_to_double(unsigned short h) { return float_from_bits(((u32)h) << 16); }

// IEEE half (1 sign, 5 exponent, 10 mantissa bits), exact in float64.
GP_HD double f16_to_double(unsigned short h) {
  u32 sign = (u32)(h >> 15) << 31, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent == 0) {  // zero or subnormal: m * 2^-24
    double v = (double)mantissa * (1.0 / 16777216.0);
    return sign ? -v : v;
  }
  u32 f32_exponent = exponent == 0x1f ? 0xff : exponent - 15 + 127;
  return float_from_bits(sign | (f32_exponent << 23) | (mantissa << 13));
}

GP_HD double load_element(const void* base, int dtype, i64 i) {
  switch (dtype) {
    case kF32: return float_from_bits(((const u32*)base)[i]);
    case kF16: return f16_to_double(((const unsigned short*)base)[i]);
    case kBF16: return bf16_to_double(((const unsigned short*)base)[i]);
    default: return ((const double*)base)[i];
  }
}

// Element of the statistic's input: x = a[i], or a[i] - b[i] for pairs (in float64, never materialised).
GP_HD double load_input(const void* a, int dtype_a, const void* b, int dtype_b, i64 i) {
  double x = load_element(a, dtype_a, i);
  return b ? x - load_element(b, dtype_b, i) : x;
}

}  // namespace gp
