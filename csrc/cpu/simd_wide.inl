// Vector types, loads and the float64-lane ("wide") statistics shared by every SIMD target.
// Included by one target_*.cpp, inside that target's namespace, after defining GP_LANES (float
// lanes per vector). Written once over GCC/Clang vector extensions; each translation unit is
// compiled with its ISA's flags, so the same source becomes SSE2, AVX2, AVX-512, NEON or SVE code.
//
// The wide path replaces the per-element scalar loop for float64 inputs, mixed-dtype pairs, blocks
// holding NaN/Inf or at risk of float underflow, and tails: x goes to float64 lanes, non-finite
// lanes are masked out of the sums and counted (not propagated), and the sums are those of
// kernels/stats_math.hpp (shifted by the stretch's first value), added per lane.

// W float lanes fill one register (or two, for NEON); the wide path's float64 vectors hold WD = W/2
// lanes, the same size: wider generic vectors are split and some operations scalarised.
constexpr int W = GP_LANES;
constexpr int WD = W / 2;
template <int N>
struct Lanes {
  typedef float f __attribute__((vector_size(N * 4)));
  typedef int i __attribute__((vector_size(N * 4)));
  typedef unsigned u __attribute__((vector_size(N * 4)));
  typedef unsigned short h __attribute__((vector_size(N * 2)));
};
typedef Lanes<W>::f vf;
typedef Lanes<W>::i vi;
typedef Lanes<W>::u vu;
typedef double vd __attribute__((vector_size(WD * 8)));
typedef long long vl __attribute__((vector_size(WD * 8)));

template <class V>
inline V load_raw(const void* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);  // unaligned load
  return v;
}

// Every lane x (vector + scalar broadcasts; a per-lane loop may go through memory).
template <class V, class S>
inline V splat(S x) {
  V v = {};
  return v + (__typeof__(v[0]))x;
}

template <class V>
constexpr int lanes_of() {
  return (int)(sizeof(V) / sizeof(V{}[0]));
}

// Lane masks of float compares (vi) test with one movemask on x86; others fold lane by lane.
template <class M>
inline int lane_bits(M m) {
#if defined(__AVX__)
  if constexpr (sizeof(M) == 32) return _mm256_movemask_ps((__m256)m);
#endif
#if defined(__SSE2__)
  if constexpr (sizeof(M) == 16) return _mm_movemask_ps((__m128)m);
#endif
  int bits = 0;
  for (int k = 0; k < lanes_of<M>(); ++k) bits |= (m[k] != 0) << k;
  return bits;
}

template <class M>
inline bool any_lane(M m) {
  if constexpr (sizeof(M) <= 32 && sizeof(m[0]) == 4) return lane_bits(m) != 0;
  long long acc = 0;
  for (int k = 0; k < lanes_of<M>(); ++k) acc |= m[k];
  return acc != 0;
}

template <class M>
inline bool all_lanes(M m) {
  if constexpr (sizeof(M) <= 32 && sizeof(m[0]) == 4) return lane_bits(m) == (1 << lanes_of<M>()) - 1;
  long long acc = -1;
  for (int k = 0; k < lanes_of<M>(); ++k) acc &= m[k];
  return acc != 0;
}

inline vf abs_lanes(vf x) { return (vf)((vu)x & 0x7fffffffu); }
inline vd abs_lanes(vd x) { return (vd)((vl)x & 0x7fffffffffffffffLL); }

// IEEE half to float32, exact, without arithmetic on float subnormals (microcode assists on many
// CPUs): normals by rebiasing the exponent bits, subnormals as m * 2^-24 from an integer, Inf/NaN by
// their bits. Signed compares: SSE2 has no unsigned ones, and the magnitudes fit in 15 bits.
template <int N>
inline typename Lanes<N>::f f16_to_f32(typename Lanes<N>::u h) {
  typedef typename Lanes<N>::u U;
  typedef typename Lanes<N>::i I;
  typedef typename Lanes<N>::f F;
  const U magnitude = h & 0x7fffu, sign = (h & 0x8000u) << 16;
  const U normal = (magnitude << 13) + ((127u - 15u) << 23);
  const U subnormal = (U)(__builtin_convertvector((I)magnitude, F) * 0x1p-24f);
  const U special = (magnitude << 13) | 0x7f800000u;
  const I is_subnormal = (I)magnitude < 0x400, is_special = (I)magnitude >= 0x7c00;
  U bits = (normal & ~(U)is_subnormal) | (subnormal & (U)is_subnormal);
  bits = (bits & ~(U)is_special) | (special & (U)is_special);
  return (F)(bits | sign);
}

// N elements of dtype D from base + i, as float32 lanes. The 16-bit widenings use the ISA's
// one-instruction forms where the target has them (generic conversions split into halves).
template <int D, int N = W>
inline typename Lanes<N>::f load_f(const void* base, i64 i) {
  typedef typename Lanes<N>::f F;
  const unsigned short* p = (const unsigned short*)base + i;
  if constexpr (D == kF32) {
    return load_raw<F>((const float*)base + i);
  } else {
#if defined(__AVX2__)
    if constexpr (N == 8) {
      const __m128i h = _mm_loadu_si128((const __m128i*)p);
#if defined(__F16C__)
      if constexpr (D == kF16) return (F)_mm256_cvtph_ps(h);
#endif
      if constexpr (D == kBF16) return (F)_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    }
#endif
#if defined(__SSE2__)
    if constexpr (N == 4) {  // bfloat16: zeros interleaved below each value give its float32 bits
      const __m128i h = _mm_loadl_epi64((const __m128i*)p), zero = _mm_setzero_si128();
      if constexpr (D == kBF16) return (F)_mm_unpacklo_epi16(zero, h);
      else return f16_to_f32<N>((typename Lanes<N>::u)_mm_unpacklo_epi16(h, zero));
    }
#endif
    const typename Lanes<N>::h h = load_raw<typename Lanes<N>::h>(p);
    const typename Lanes<N>::u wide = __builtin_convertvector(h, typename Lanes<N>::u);
    if constexpr (D == kBF16) return (F)(wide << 16);
    else return f16_to_f32<N>(wide);
  }
}

template <int D>
inline vd load_d(const void* base, i64 i) {
  if constexpr (D == kF64) return load_raw<vd>((const double*)base + i);
  else return __builtin_convertvector(load_f<D, WD>(base, i), vd);
}

// Sum of the lanes by halving (log2 steps of latency, not one add per lane): the block's shift is
// on the critical path of every block. Float lanes are widened to float64 first.
template <class T, int N>
struct Halving {
  typedef T V __attribute__((vector_size(N * sizeof(T))));
  typedef T H __attribute__((vector_size(N * sizeof(T) / 2)));
  static T sum(const V& v) {
    H lo, hi;
    __builtin_memcpy(&lo, &v, sizeof lo);
    __builtin_memcpy(&hi, (const char*)&v + sizeof lo, sizeof hi);
    return Halving<T, N / 2>::sum(*(typename Halving<T, N / 2>::V*)&(lo) + hi);
  }
};

template <class T>
struct Halving<T, 1> {
  typedef T V __attribute__((vector_size(sizeof(T))));
  static T sum(const V& v) { return v[0]; }
};

inline float sum_lanes_float(vf v) { return Halving<float, W>::sum(v); }

inline double sum_lanes(vd v) { return Halving<double, WD>::sum(v); }

// Float lanes are widened half by half into float64 vectors of the register's size: a widening of
// the whole vector makes a generic vector twice the register, which compilers move through memory
// (store-forwarding stalls once per block).
inline double sum_lanes(vf v) {
  typedef float Half __attribute__((vector_size(WD * 4)));
  Half lo, hi;
  __builtin_memcpy(&lo, &v, sizeof lo);
  __builtin_memcpy(&hi, (const char*)&v + sizeof lo, sizeof hi);
  return sum_lanes(__builtin_convertvector(lo, vd) + __builtin_convertvector(hi, vd));
}

// Per-lane float64 accumulators of the wide path.
struct WideLanes {
  vd s1, s2, l1, mn, mx;
  vl n, zeros, nans;
};

inline void wide_init(WideLanes& w) {
  w.s1 = w.s2 = w.l1 = splat<vd>(0.0);
  w.mn = splat<vd>(__builtin_inf());
  w.mx = splat<vd>(-__builtin_inf());
  w.n = w.zeros = w.nans = splat<vl>(0LL);
}

// Adds WD values: non-finite lanes are masked out of the sums and counted. Lane k's bin goes to
// counts[k * stride + bin]: per-lane rows (stride kHistBins) keep neighbours that share a bin from
// serialising on one counter; stride 0 counts every lane straight into one histogram.
template <class Count>
inline void wide_step(WideLanes& w, vd x, vd shift, Count* counts, int stride) {
  const vd zero = splat<vd>(0.0);
  const vl exponent = splat<vl>((long long)0x7ff0000000000000LL);
  const vl bits = (vl)x;
  const vl finite = (bits & exponent) != exponent;
  const vd d = finite ? x - shift : zero;
  w.s1 += d;
  w.s2 += d * d;
  w.l1 += finite ? abs_lanes(x) : zero;
  w.mn = (finite & (x < w.mn)) ? x : w.mn;
  w.mx = (finite & (x > w.mx)) ? x : w.mx;
  w.n -= finite;
  w.zeros -= x == zero;
  w.nans -= x != x;
  if (counts) {
    // hist_bin: clamp(biased exponent - 1023 - kHistExpMin + 1) for finite non-zero x.
    const vl counted = finite & (x != zero);
    for (int k = 0; k < WD; ++k) {
      int bin = (int)((bits[k] >> 52) & 0x7ff) - (1023 + kHistExpMin - 1);
      bin = bin < 0 ? 0 : (bin > kHistBins - 1 ? kHistBins - 1 : bin);
      counts[k * stride + bin] += (Count)(counted[k] & 1);
    }
  }
}

inline void wide_flush(const WideLanes& w, double count, Sums& s) {
  double finite_count = 0, nan_count = 0, zero_count = 0;
  for (int k = 0; k < WD; ++k) {
    finite_count += (double)w.n[k];
    nan_count += (double)w.nans[k];
    zero_count += (double)w.zeros[k];
    s.mn = min_value(s.mn, w.mn[k]);
    s.mx = max_value(s.mx, w.mx[k]);
  }
  s.n += finite_count;
  s.s1 += sum_lanes(w.s1);
  s.s2 += sum_lanes(w.s2);
  s.l1 += sum_lanes(w.l1);
  s.zeros += zero_count;
  s.nans += nan_count;
  s.infs += count - finite_count - nan_count;
}

template <int DA, int DB, bool kPair>
inline vd load_wide(const void* a, const void* b, i64 i) {
  vd x = load_d<DA>(a, i);
  if constexpr (kPair) x -= load_d<DB>(b, i);
  return x;
}

// Adds elements [start, start+len) of x = a (or a - b, in float64) into s, and their bins into
// counts (see wide_step; the second accumulator set uses the rows after the first's). Two
// accumulator sets hide the add latency.
template <int DA, int DB, bool kPair, class Count>
void wide_add_counting(const TensorDesc& t, i64 start, i64 len, Sums& s, Count* counts, int stride) {
  const void* a = (const void*)t.a;
  const void* b = (const void*)t.b;
  const vd shift = splat<vd>(s.shift);
  WideLanes w0, w1;
  wide_init(w0);
  wide_init(w1);
  Count* counts1 = counts ? counts + WD * stride : nullptr;
  const i64 end = start + len;
  i64 i = start;
  for (; i + 2 * WD <= end; i += 2 * WD) {
    wide_step(w0, load_wide<DA, DB, kPair>(a, b, i), shift, counts, stride);
    wide_step(w1, load_wide<DA, DB, kPair>(a, b, i + WD), shift, counts1, stride);
  }
  if (i + WD <= end) {
    wide_step(w0, load_wide<DA, DB, kPair>(a, b, i), shift, counts, stride);
    i += WD;
  }
  if (i > start) {
    wide_flush(w0, 0.0, s);
    wide_flush(w1, 0.0, s);
    s.infs += (double)(i - start);  // each flush subtracted its finite and NaN lanes
  }
  for (; i < end; ++i) {  // fewer than WD elements
    const int bin = sums_add(s, load_input(a, DA, b, DB, i));
    if (counts && bin >= 0) ++counts[bin];
  }
}

// Below this many elements (tails, small tensors) lanes count straight into hist: zeroing and
// folding the per-lane rows would cost more than the serialised counters.
constexpr i64 kLaneRowsFrom = 2048;

template <int DA, int DB, bool kPair>
void wide_add(const TensorDesc& t, i64 start, i64 len, Sums& s, u64* hist) {
  if (!hist || len < kLaneRowsFrom) return wide_add_counting<DA, DB, kPair, u64>(t, start, len, s, hist, 0);
  u32 rows[2 * WD * kHistBins] = {};  // one row per lane of each accumulator set; the tail adds to row 0
  wide_add_counting<DA, DB, kPair, u32>(t, start, len, s, rows, kHistBins);
  for (int r = 0; r < 2 * WD; ++r)
    for (int bin = 0; bin < kHistBins; ++bin) hist[bin] += rows[r * kHistBins + bin];
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
