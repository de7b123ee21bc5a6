// Vector types, loads and the float64-lane ("wide") statistics shared by every SIMD target.
// Included by one target_*.cpp, inside that target's namespace, after defining GP_LANES (float
// lanes per vector). Written once over GCC/Clang vector extensions; each translation unit is
// compiled with its ISA's flags, so the same source becomes SSE2, AVX2, AVX-512, NEON or SVE code.
//
// The wide path replaces the per-element scalar loop for float64 inputs, mixed-dtype pairs, blocks
// holding NaN/Inf or at risk of float underflow, and tails: x goes to float64 lanes, non-finite
// lanes are masked out of the sums and counted (not propagated), and the sums are those of
// kernels/stats_math.hpp (shifted by the stretch's first value), added per lane.

constexpr int W = GP_LANES;
typedef float vf __attribute__((vector_size(W * 4)));
typedef int vi __attribute__((vector_size(W * 4)));
typedef unsigned vu __attribute__((vector_size(W * 4)));
typedef unsigned short vh __attribute__((vector_size(W * 2)));
typedef double vd __attribute__((vector_size(W * 8)));
typedef long long vl __attribute__((vector_size(W * 8)));

template <class V>
inline V load_raw(const void* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);  // unaligned load
  return v;
}

template <class V, class S>
inline V splat(S x) {
  V v;
  for (int k = 0; k < (int)(sizeof(V) / sizeof(S)); ++k) v[k] = x;
  return v;
}

inline bool any_lane(vi m) {
  int acc = 0;
  for (int k = 0; k < W; ++k) acc |= m[k];
  return acc != 0;
}

inline bool all_lanes(vi m) {
  int acc = -1;
  for (int k = 0; k < W; ++k) acc &= m[k];
  return acc != 0;
}

inline vf abs_lanes(vf x) { return (vf)((vu)x & 0x7fffffffu); }
inline vd abs_lanes(vd x) { return (vd)((vl)x & 0x7fffffffffffffffLL); }

// IEEE half to float32, exact: normals and subnormals by one multiply, Inf/NaN by their bits.
inline vf f16_to_f32(vh h16) {
  const vu h = __builtin_convertvector(h16, vu);
  const vu magnitude = h & 0x7fffu, sign = (h & 0x8000u) << 16;
  vu bits = (vu)((vf)(magnitude << 13) * 0x1p112f);
  bits = magnitude >= 0x7c00u ? ((magnitude << 13) | 0x7f800000u) : bits;
  return (vf)(bits | sign);
}

template <int D>
inline vf load_f(const void* base, i64 i) {
  if constexpr (D == kF32) {
    return load_raw<vf>((const float*)base + i);
  } else {
    const vh h = load_raw<vh>((const unsigned short*)base + i);
    if constexpr (D == kBF16) return (vf)(__builtin_convertvector(h, vu) << 16);
    else return f16_to_f32(h);
  }
}

template <int D>
inline vd load_d(const void* base, i64 i) {
  if constexpr (D == kF64) return load_raw<vd>((const double*)base + i);
  else return __builtin_convertvector(load_f<D>(base, i), vd);
}

template <class V>
inline double sum_lanes(V v) {
  double s = 0;
  for (int k = 0; k < W; ++k) s += (double)v[k];
  return s;
}

// Adds elements [start, start+len) of x = a (or a - b, in float64) into s, and their bins into hist.
template <int DA, int DB, bool kPair>
void wide_add(const TensorDesc& t, i64 start, i64 len, Sums& s, u64* hist) {
  const void* a = (const void*)t.a;
  const void* b = (const void*)t.b;
  const vd shift = splat<vd>(s.shift), zero = splat<vd>(0.0);
  const vl exponent = splat<vl>((long long)0x7ff0000000000000LL);
  vd s1 = zero, s2 = zero, l1 = zero, mn = splat<vd>(__builtin_inf()), mx = splat<vd>(-__builtin_inf());
  vl n = {}, zeros = {}, nans = {};
  const i64 end = start + len;
  i64 i = start;
  for (; i + W <= end; i += W) {
    vd x = load_d<DA>(a, i);
    if constexpr (kPair) x -= load_d<DB>(b, i);
    const vl bits = (vl)x;
    const vl finite = (bits & exponent) != exponent;
    const vd d = finite ? x - shift : zero;
    s1 += d;
    s2 += d * d;
    l1 += finite ? abs_lanes(x) : zero;
    mn = (finite & (x < mn)) ? x : mn;
    mx = (finite & (x > mx)) ? x : mx;
    n -= finite;
    zeros -= x == zero;
    nans -= x != x;
    if (hist) {
      // hist_bin: clamp(biased exponent - 1023 - kHistExpMin + 1) for finite non-zero x.
      vl bin = ((bits >> 52) & 0x7ff) - (1023 + kHistExpMin - 1);
      bin = bin < 0 ? 0 : bin;
      bin = bin > kHistBins - 1 ? kHistBins - 1 : bin;
      const vl counted = finite & (x != zero);
      for (int k = 0; k < W; ++k) hist[bin[k]] += (u64)(counted[k] & 1);
    }
  }
  if (i > start) {
    double count = 0, finite_count = 0, nan_count = 0, zero_count = 0;
    for (int k = 0; k < W; ++k) {
      finite_count += (double)n[k];
      nan_count += (double)nans[k];
      zero_count += (double)zeros[k];
      s.mn = min_value(s.mn, mn[k]);
      s.mx = max_value(s.mx, mx[k]);
    }
    count = (double)(i - start);
    s.n += finite_count;
    s.s1 += sum_lanes(s1);
    s.s2 += sum_lanes(s2);
    s.l1 += sum_lanes(l1);
    s.zeros += zero_count;
    s.nans += nan_count;
    s.infs += count - finite_count - nan_count;
  }
  for (; i < end; ++i) {  // fewer than W elements
    const int bin = sums_add(s, load_input(a, DA, b, DB, i));
    if (hist && bin >= 0) ++hist[bin];
  }
}

template <int DA>
void wide_add_pair(const TensorDesc& t, i64 start, i64 len, Sums& s, u64* hist) {
  switch (t.dtype_b) {
    case kF32: return wide_add<DA, kF32, true>(t, start, len, s, hist);
    case kF16: return wide_add<DA, kF16, true>(t, start, len, s, hist);
    case kBF16: return wide_add<DA, kBF16, true>(t, start, len, s, hist);
    default: return wide_add<DA, kF64, true>(t, start, len, s, hist);
  }
}

void wide_add_any(const TensorDesc& t, i64 start, i64 len, Sums& s, u64* hist) {
  if (t.b) {
    switch (t.dtype_a) {
      case kF32: return wide_add_pair<kF32>(t, start, len, s, hist);
      case kF16: return wide_add_pair<kF16>(t, start, len, s, hist);
      case kBF16: return wide_add_pair<kBF16>(t, start, len, s, hist);
      default: return wide_add_pair<kF64>(t, start, len, s, hist);
    }
  }
  switch (t.dtype_a) {
    case kF32: return wide_add<kF32, kF32, false>(t, start, len, s, hist);
    case kF16: return wide_add<kF16, kF16, false>(t, start, len, s, hist);
    case kBF16: return wide_add<kBF16, kBF16, false>(t, start, len, s, hist);
    default: return wide_add<kF64, kF64, false>(t, start, len, s, hist);
  }
}

// The stretch's sums, shifted by its first value (as the exact path does).
inline Sums stretch_sums(const TensorDesc& t, i64 start, i64 len) {
  const double first = len > 0 ? load_input((const void*)t.a, t.dtype_a, (const void*)t.b, t.dtype_b, start) : 0.0;
  Sums s;
  sums_init(s, shift_for(first));
  return s;
}

double read_floor_lanes(const float* data, i64 n) {
  vf a = splat<vf>(0.0f), b = a, c = a, d = a;
  i64 i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    a += load_raw<vf>(data + i);
    b += load_raw<vf>(data + i + W);
    c += load_raw<vf>(data + i + 2 * W);
    d += load_raw<vf>(data + i + 3 * W);
  }
  double sum = sum_lanes((a + b) + (c + d));
  for (; i < n; ++i) sum += data[i];
  return sum;
}
