// The float-lane fast path, written once over vector extensions (see simd_wide.inl) and compiled
// per target. Same numerics as the AVX-512 path: float lanes accumulate at most a 512-element
// block around the block's own mean, the block becomes a float64 partial (n, mean, M2) merged
// with Chan's formula; blocks that fail the faithfulness checks and the tail go to the wide path.
// Include after simd_wide.inl; defines this target's `kernels` table.

constexpr i64 kBlock = 512;
constexpr i64 kTables = 16;  // per-lane exponent tables: neighbours sharing a bin do not serialise
constexpr int kTableSize = 512;  // sign + exponent field

// 2W consecutive elements as two float vectors. bfloat16 is the top half of a float32: one load of
// 2W values gives the even ones by a shift and the odd ones by a mask (two instructions, no
// widening shuffle). The lanes come out permuted, which no block statistic or bin depends on;
// every pass over a block reads it through this function, so they all see the same permutation.
template <int D>
inline void load2_f(const void* base, i64 i, vf& x0, vf& x1) {
  if constexpr (D == kBF16) {
    const vu v = load_raw<vu>((const unsigned short*)base + i);
    x0 = (vf)(v << 16);
    x1 = (vf)(v & 0xffff0000u);
  } else {
    x0 = load_f<D>(base, i);
    x1 = load_f<D>(base, i + W);
  }
}

template <int D, bool kPair>
inline void load2_x(const TensorDesc& t, i64 i, vf& x0, vf& x1) {
  load2_f<D>((const void*)t.a, i, x0, x1);
  if constexpr (kPair) {
    vf b0, b1;
    load2_f<D>((const void*)t.b, i, b0, b1);
    x0 -= b0;
    x1 -= b1;
  }
}

// Whether some lane's float difference a - b was rounded (TwoSum's error term is non-zero).
template <int D>
bool block_has_inexact_difference(const TensorDesc& t, i64 i) {
  vi inexact = {};
  for (i64 j = i; j < i + kBlock; j += W) {
    const vf a = load_f<D>((const void*)t.a, j), minus_b = -load_f<D>((const void*)t.b, j);
    const vf s = a + minus_b;
    const vf b_virtual = s - a;
    const vf a_virtual = s - b_virtual;
    const vf error = (a - a_virtual) + (minus_b - b_virtual);
    inexact |= error != 0.0f;  // NaN error: the block is redone exactly anyway
  }
  return any_lane(inexact);
}

// Unstaged blocks: the block loop reads the next block once every kNextEvery iterations (2W values
// each), once per 64-byte cache line.
template <int D>
constexpr i64 kNextEvery = 64 / (2 * W * (D == kF32 ? 4 : 2)) > 1 ? 64 / (2 * W * (D == kF32 ? 4 : 2)) : 1;

// Whether a block is staged: float16 inputs and pairs are converted (or subtracted) once into a
// float32 copy of the block in L1, which the statistics and histogram passes then read. float32
// and bfloat16 (a shift and a mask: cheaper than a store and a reload) are read from the input again.
template <int D, bool kPair>
constexpr bool kStaged = D == kF16 || kPair;

// A block's values as float lanes: elements [j, j+2W) of the block (lanes permuted, see load2_f).
template <int D, bool kPair>
struct BlockSource {
  const TensorDesc& t;
  i64 i;
  const float* staged;
  void load2(i64 j, vf& x0, vf& x1) const {
    if constexpr (kStaged<D, kPair>) {
      x0 = load_raw<vf>(staged + j);
      x1 = load_raw<vf>(staged + j + W);
    } else {
      load2_x<D, false>(t, i + j, x0, x1);
    }
  }
};

// A block's shift from the float lanes of the sum of n of its values: their mean (0 if not finite).
inline float shift_of_sum(vf sum, i64 n = kBlock) {
  const float mean = sum_lanes_float(sum) * (1.0f / (float)n);
  return __builtin_isfinite(mean) ? mean : 0.0f;
}

// The block's own mean as its shift: an outlier at the start of a stretch cannot amplify rounding.
// Stages the block when kStaged. Only a stretch's first block: stretch_fast reads each next block's
// sum while it computes the current one.
template <int D, bool kPair>
inline float block_mean(const TensorDesc& t, i64 i, float* staged) {
  vf a = splat<vf>(0.0f), b = a;
  for (i64 j = 0; j < kBlock; j += 2 * W) {
    vf x0, x1;
    load2_x<D, kPair>(t, i + j, x0, x1);
    if constexpr (kStaged<D, kPair>) {
      __builtin_memcpy(staged + j, &x0, sizeof x0);
      __builtin_memcpy(staged + j + W, &x1, sizeof x1);
    }
    a += x0;
    b += x1;
  }
  return shift_of_sum(a + b);
}

struct ExponentTables {
  alignas(64) u32 count[kTables][kTableSize + 16];  // +64 bytes: tables 4 KiB apart would alias
};

ExponentTables& thread_tables() {
  thread_local ExponentTables tables{};  // zero-initialised; every fold leaves it zeroed
  return tables;
}

template <int D, bool kPair>
void block_hist_tables(const BlockSource<D, kPair>& src, ExponentTables& tables) {
  for (i64 j = 0; j < kBlock; j += 2 * W) {
    vf x0, x1;
    src.load2(j, x0, x1);
    const vu field0 = (vu)x0 >> 23, field1 = (vu)x1 >> 23;
    for (int k = 0; k < W; ++k) ++tables.count[k & (kTables - 1)][field0[k]];
    for (int k = 0; k < W; ++k) ++tables.count[(W + k) & (kTables - 1)][field1[k]];
  }
}

// Adds the tables into bins; exact zeros share exponent field 0 with subnormals and are no bin.
void fold_tables(ExponentTables& tables, u64 zeros, u64* hist) {
  for (int field = 0; field < 256; ++field) {
    u64 count = 0;
    for (int sub = 0; sub < kTables; ++sub) {
      count += u64{tables.count[sub][field]} + tables.count[sub][256 + field];
      tables.count[sub][field] = tables.count[sub][256 + field] = 0;
    }
    if (field == 0) count -= zeros;
    if (count) hist[hist_bin_of_f32_exponent_field(field)] += count;
  }
}

// Byte histogram: a block's exponent fields (8 bits, sign dropped) packed four registers to one, so
// one compare + subtract counts a field in 4W values; the fields between the block's smallest and
// largest non-zero field are counted one by one (typically 10-20 for gradients). Blocks spanning
// more than kMaxSpan fields use the tables. Packing and byte sums are per ISA; order is irrelevant.
typedef unsigned char vb __attribute__((vector_size(W * 4)));
typedef signed char vsb __attribute__((vector_size(W * 4)));
constexpr int kPacked = (int)(kBlock / (4 * W));  // byte vectors per block: at most kPacked hits per lane
// Blocks a byte counter holds before it must be flushed: 15 with 8 float lanes, 7 with 4 (the SSE
// targets), whose blocks pack into twice as many byte vectors.
constexpr int kFlushBlocks = 255 / kPacked;
constexpr int kMaxSpan = 40;

inline vb pack_fields(vu f0, vu f1, vu f2, vu f3) {
#if defined(__AVX2__) && GP_LANES == 8
  const __m256i a = _mm256_packs_epi32((__m256i)f0, (__m256i)f1), b = _mm256_packs_epi32((__m256i)f2, (__m256i)f3);
  return (vb)_mm256_packus_epi16(a, b);
#elif defined(__SSE2__) && GP_LANES == 4
  const __m128i a = _mm_packs_epi32((__m128i)f0, (__m128i)f1), b = _mm_packs_epi32((__m128i)f2, (__m128i)f3);
  return (vb)_mm_packus_epi16(a, b);
#else
  typedef unsigned char nb __attribute__((vector_size(W)));
  const nb b0 = __builtin_convertvector(f0, nb), b1 = __builtin_convertvector(f1, nb);
  const nb b2 = __builtin_convertvector(f2, nb), b3 = __builtin_convertvector(f3, nb);
  vb out;
  __builtin_memcpy((char*)&out, &b0, W);
  __builtin_memcpy((char*)&out + W, &b1, W);
  __builtin_memcpy((char*)&out + 2 * W, &b2, W);
  __builtin_memcpy((char*)&out + 3 * W, &b3, W);
  return out;
#endif
}

inline u64 sum_bytes(vb v) {
#if defined(__AVX2__) && GP_LANES == 8
  const __m256i s = _mm256_sad_epu8((__m256i)v, _mm256_setzero_si256());
  return (u64)(_mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 1) + _mm256_extract_epi64(s, 2) +
               _mm256_extract_epi64(s, 3));
#elif defined(__SSE2__) && GP_LANES == 4
  const __m128i s = _mm_sad_epu8((__m128i)v, _mm_setzero_si128());
  return (u64)(_mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)));
#else
  u64 sum = 0;
  for (int k = 0; k < 4 * W; ++k) sum += v[k];
  return sum;
#endif
}

// Per-field byte counters kept across blocks: a block adds at most kPacked to a lane, so
// kFlushBlocks blocks fit a byte before the counters are summed into bins (one byte sum per field
// per kFlushBlocks blocks instead of per block). Per thread; every flush leaves the touched counters zeroed.
struct FieldCounters {
  vb count[256];
  int lo = 256, top = -1, blocks = 0;
};

FieldCounters& thread_counters() {
  thread_local FieldCounters counters{};
  return counters;
}

void flush_counters(FieldCounters& c, u64* hist) {
  for (int field = c.lo; field <= c.top; ++field) {
    const u64 n = sum_bytes(c.count[field]);
    if (n) hist[hist_bin_of_f32_exponent_field(field)] += n;
    c.count[field] = splat<vb>((unsigned char)0);
  }
  c.lo = 256;
  c.top = -1;
  c.blocks = 0;
}

// Counts one finite block into the counters (and hist); false (nothing counted) when it spans more
// than kMaxSpan fields.
template <int D, bool kPair>
bool block_hist_bytes(const BlockSource<D, kPair>& src, u64 zeros, bool has_tiny, FieldCounters& counters, u64* hist) {
  vb fields[kPacked];
  vb lo_minus_one = splat<vb>((unsigned char)255), hi = splat<vb>((unsigned char)0);
  for (int v = 0; v < kPacked; ++v) {
    vf x0, x1, x2, x3;
    src.load2(4 * W * v, x0, x1);
    src.load2(4 * W * v + 2 * W, x2, x3);
    fields[v] = pack_fields(((vu)x0 << 1) >> 24, ((vu)x1 << 1) >> 24, ((vu)x2 << 1) >> 24, ((vu)x3 << 1) >> 24);
    const vb wrapped = fields[v] - (unsigned char)1;  // field 0 (zeros, subnormals) wraps to 255
    lo_minus_one = wrapped < lo_minus_one ? wrapped : lo_minus_one;
    hi = fields[v] > hi ? fields[v] : hi;
  }
  int lo = 256, top = 0;
  for (int k = 0; k < 4 * W; ++k) {
    lo = lo_minus_one[k] + 1 < lo ? lo_minus_one[k] + 1 : lo;
    top = hi[k] > top ? hi[k] : top;
  }
  if (lo <= top && top - lo + 1 > kMaxSpan) return false;
  if (has_tiny) {  // field 0 counts zeros (no bin) and subnormals (bin 0)
    vsb count = {};
    for (int v = 0; v < kPacked; ++v) count -= (vsb)(fields[v] == (unsigned char)0);
    hist[0] += sum_bytes((vb)count) - zeros;
  }
  if (lo > top) return true;
  for (int field = lo; field <= top; ++field) {
    const vb f = splat<vb>((unsigned char)field);
    vsb count = (vsb)counters.count[field];
    for (int v = 0; v < kPacked; ++v) count -= (vsb)(fields[v] == f);
    counters.count[field] = (vb)count;
  }
  counters.lo = lo < counters.lo ? lo : counters.lo;
  counters.top = top > counters.top ? top : counters.top;
  if (++counters.blocks == kFlushBlocks) flush_counters(counters, hist);
  return true;
}

// Whether this ISA has unsigned 16- and 32-bit integer min/max (SSE2 has neither; SSE4.1 on has both).
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__SSE4_1__)
#define GP_UNSIGNED_MIN_MAX 0
#else
#define GP_UNSIGNED_MIN_MAX 1
#endif

// Each lane's smallest |x| (zeros and subnormals are counted only where it says so), kept as the
// bits of |x|, whose unsigned order is that of |x|: an integer min runs beside the float min, max
// and FMA that the block loop is short of (AVX2 pass 7% faster). SSE2 has no unsigned 32-bit min
// and keeps the float one.
struct SmallestMagnitude {
#if !GP_UNSIGNED_MIN_MAX
  vf least = splat<vf>(__builtin_inff());
  void add(vf a0, vf a1) {
    const vf a01 = a0 < a1 ? a0 : a1;
    least = a01 < least ? a01 : least;
  }
  bool any_zero() const { return any_lane(least == 0.0f); }
  bool any_below_normal() const { return any_lane(least < __FLT_MIN__); }
#else
  vu least = splat<vu>(0x7f800000u);  // +inf; NaN bits are larger and never win
  void add(vf a0, vf a1) {
    const vu a01 = (vu)a0 < (vu)a1 ? (vu)a0 : (vu)a1;
    least = a01 < least ? a01 : least;
  }
  bool any_zero() const { return any_lane(least == 0u); }
  bool any_below_normal() const { return any_lane(least < 0x00800000u); }
#endif
};

#if GP_UNSIGNED_MIN_MAX
// bfloat16's min, max and smallest |x| on its raw 16-bit lanes, 2W values per instruction and on
// the integer ports (the float min/max ports limit the loop). Positive values order as signed
// integers; negative ones by magnitude as unsigned integers. So per lane: the maximum is the signed
// maximum if it is non-negative, else (all negative) the unsigned minimum; the minimum is the
// unsigned maximum if it is negative, else (none negative) the unsigned minimum. NaN orders wrong,
// but a block holding one is redone in float64 (its sums are not finite). SSE2 lacks the unsigned
// 16-bit compares.
constexpr bool kIntegerExtremes = true;
struct Bf16Extremes {
  typedef short vs16 __attribute__((vector_size(W * 4)));
  typedef unsigned short vu16 __attribute__((vector_size(W * 4)));
  vs16 signed_max = splat<vs16>((short)-32768);
  vu16 unsigned_max = splat<vu16>((unsigned short)0);
  vu16 unsigned_min = splat<vu16>((unsigned short)0xffff);
  vu16 least = splat<vu16>((unsigned short)0x7f80);  // smallest |x|, from +inf
  void add(vu raw) {
    const vs16 s = (vs16)raw;
    const vu16 u = (vu16)raw, magnitude = u & (unsigned short)0x7fff;
    signed_max = s > signed_max ? s : signed_max;
    unsigned_max = u > unsigned_max ? u : unsigned_max;
    unsigned_min = u < unsigned_min ? u : unsigned_min;
    least = magnitude < least ? magnitude : least;
  }
  // Each 32-bit lane holds two bfloat16 values: the low one is even, the high one odd.
  static void widen(vu16 bits, vf& even, vf& odd) {
    even = (vf)((vu)bits << 16);
    odd = (vf)((vu)bits & 0xffff0000u);
  }
  vf max() const {
    const vu16 bits = signed_max >= (short)0 ? (vu16)signed_max : unsigned_min;
    vf even, odd;
    widen(bits, even, odd);
    return even > odd ? even : odd;
  }
  vf min() const {
    const vu16 bits = (vs16)unsigned_max < (short)0 ? unsigned_max : unsigned_min;
    vf even, odd;
    widen(bits, even, odd);
    return even < odd ? even : odd;
  }
  bool any_zero() const { return any_lane((vu)(least == (unsigned short)0) != 0u); }
  bool any_below_normal() const { return any_lane((vu)(least < (unsigned short)0x0080) != 0u); }
};
#else
constexpr bool kIntegerExtremes = false;
struct Bf16Extremes {  // never used: kRawExtremes is false here
  void add(vu) {}
  vf max() const { return vf{}; }
  vf min() const { return vf{}; }
  bool any_zero() const { return true; }
  bool any_below_normal() const { return true; }
};
#endif

// Whether the block loop takes min, max and smallest |x| from the raw bfloat16 lanes.
template <int D, bool kPair>
constexpr bool kRawExtremes = kIntegerExtremes && D == kBF16 && !kPair;

// Whether float lanes summed this block faithfully (see the AVX-512 path: non-finite sums, and
// non-constant blocks whose |x| are all below 2^-60 or whose d^2 lane sums are all below 2^-80).
inline bool block_fits_float_lanes(vf l1, vf s2, vf mn, vf mx, vf shift) {
  if (!all_lanes(l1 + s2 < __builtin_inff())) return false;
  if (all_lanes(mn == shift) && all_lanes(mx == shift)) return true;
  const vf mn_abs = abs_lanes(mn), mx_abs = abs_lanes(mx);
  const vf largest = mn_abs > mx_abs ? mn_abs : mx_abs;
  if (!any_lane(largest >= 0x1p-60f)) return false;
  return any_lane(s2 >= 0x1p-80f);
}

template <int D, bool kPair>
Partial stretch_fast(const TensorDesc& t, i64 start, i64 len, Sums& exact, u64* hist) {
  const vf zero = splat<vf>(0.0f), inf = splat<vf>(__builtin_inff()), minus_inf = -inf;
  const vu mantissa = splat<vu>(0x7fffffu);
  Partial blocks;
  partial_init(blocks);
  vf run_min = inf, run_max = minus_inf;
  u64 table_zeros = 0;  // zeros of the blocks counted into the exponent tables
  bool tables_used = false;
  FieldCounters& counters = thread_counters();
  alignas(64) float staged[2][kBlock];  // this block and the next in float32 (kStaged only)
  const i64 end = start + len;
  i64 i = start;
  int cur = 0;
  float block_shift = block_mean<D, kPair>(t, i, staged[0]), next_shift = 0.0f;
  for (; i + kBlock <= end; i += kBlock, cur ^= 1, block_shift = next_shift) {
    const BlockSource<D, kPair> src{t, i, staged[cur]};
    const vf shift = splat<vf>(block_shift);
    // The next block's first read (its sum: the next shift; its staged copy) is interleaved with
    // this block's statistics, so that memory reads stay in flight while this block is computed
    // and no block waits on its own mean. The last block reads itself again (results unused).
    // These reads are one sequential stream that the hardware prefetcher follows: software
    // prefetches 8 KiB ahead made the AVX2 pass slower (1.2-1.5x the read floor against 1.1x).
    const i64 next = i + 2 * kBlock <= end ? i + kBlock : i;
    float* staged_next = staged[cur ^ 1];
    vf next_a = zero, next_b = zero;
    // Nine accumulators (pairs of lanes folded before accumulating) so that the loop's state,
    // constants and temporaries fit 16 vector registers (SSE, AVX2).
    vf s1 = zero, s2a = zero, s2b = zero, l1 = zero, mn = inf, mx = minus_inf;
    SmallestMagnitude tiny;
    Bf16Extremes bf16_extremes;
    vi powers_of_two = {};  // pairs: non-zero differences whose mantissa is 0
    for (i64 j = 0; j < kBlock; j += 2 * W) {
      if constexpr (kStaged<D, kPair>) {
        vf y0, y1;
        load2_x<D, kPair>(t, next + j, y0, y1);
        __builtin_memcpy(staged_next + j, &y0, sizeof y0);
        __builtin_memcpy(staged_next + j + W, &y1, sizeof y1);
        next_a += y0;
        next_b += y1;
      } else if ((j / (2 * W)) % kNextEvery<D> == 0) {
        // float32 and bfloat16: one load per cache line of the next block reads all of it into
        // L1, and the mean of the values it gives (y0: half of them, or fewer) is shift enough:
        // s1 corrects any shift exactly. The compiler drops the unused y1 (for float32, its load).
        vf y0, y1;
        load2_x<D, kPair>(t, next + j, y0, y1);
        next_a += y0;
      }
      vf x0, x1;
      vu raw;  // kRawExtremes: the 2W bfloat16 values as loaded
      if constexpr (kRawExtremes<D, kPair>) {
        raw = load_raw<vu>((const unsigned short*)t.a + i + j);
        x0 = (vf)(raw << 16);
        x1 = (vf)(raw & 0xffff0000u);
      } else {
        src.load2(j, x0, x1);
      }
      const vf d0 = x0 - shift, d1 = x1 - shift;
      const vf a0 = abs_lanes(x0), a1 = abs_lanes(x1);
      s1 += d0 + d1;
      s2a += d0 * d0;
      s2b += d1 * d1;
      l1 += a0 + a1;
      if constexpr (kRawExtremes<D, kPair>) {
        bf16_extremes.add(raw);
      } else {
        const vf lo = x0 < x1 ? x0 : x1, hi = x0 > x1 ? x0 : x1;
        mn = lo < mn ? lo : mn;
        mx = hi > mx ? hi : mx;
        tiny.add(a0, a1);
      }
      if constexpr (kPair) {
        powers_of_two |= (x0 != zero) & (((vu)x0 & mantissa) == 0u);
        powers_of_two |= (x1 != zero) & (((vu)x1 & mantissa) == 0u);
      }
    }
    next_shift = shift_of_sum(next_a + next_b, kStaged<D, kPair> ? kBlock : kBlock / (2 * kNextEvery<D>));
    if constexpr (kPair) {
      // A rounded float difference changes bin only when it rounds onto a power of two.
      if (any_lane(powers_of_two) && block_has_inexact_difference<D>(t, i)) {
        wide_add_any(t, i, kBlock, exact, hist);
        continue;
      }
    }
    const vf s2 = s2a + s2b;
    const vf block_min = kRawExtremes<D, kPair> ? bf16_extremes.min() : mn;
    const vf block_max = kRawExtremes<D, kPair> ? bf16_extremes.max() : mx;
    const bool any_zero = kRawExtremes<D, kPair> ? bf16_extremes.any_zero() : tiny.any_zero();
    if (!block_fits_float_lanes(l1, s2, block_min, block_max, shift)) {
      wide_add_any(t, i, kBlock, exact, hist);
      continue;
    }
    u64 zeros = 0;
    if (any_zero) {
      vi count = {};
      for (i64 j = 0; j < kBlock; j += 2 * W) {
        vf x0, x1;
        src.load2(j, x0, x1);
        count -= (x0 == zero) + (x1 == zero);
      }
      for (int k = 0; k < W; ++k) zeros += (u64)count[k];
    }
    const double n = (double)kBlock, s1_sum = sum_lanes(s1);
    const double m2 = sum_lanes(s2) - s1_sum * (s1_sum / n);
    Partial block{n, (double)block_shift + s1_sum / n, m2 > 0 ? m2 : 0.0, sum_lanes(l1),
                  __builtin_inf(), -__builtin_inf(), (double)zeros, 0, 0};
    partial_merge(blocks, block);
    run_min = block_min < run_min ? block_min : run_min;
    run_max = block_max > run_max ? block_max : run_max;
    if (hist && !block_hist_bytes<D, kPair>(src, zeros, (kRawExtremes<D, kPair> ? bf16_extremes.any_below_normal() : tiny.any_below_normal()),
                                                  counters, hist)) {
      block_hist_tables<D, kPair>(src, thread_tables());
      table_zeros += zeros;
      tables_used = true;
    }
  }
  if (i < end) wide_add_any(t, i, end - i, exact, hist);
  if (hist && tables_used) fold_tables(thread_tables(), table_zeros, hist);
  if (hist) flush_counters(counters, hist);
  Partial result = partial_from_sums(exact);
  partial_merge(result, blocks);
  if (blocks.n > 0) {
    for (int k = 0; k < W; ++k) {
      result.mn = min_value(result.mn, (double)run_min[k]);
      result.mx = max_value(result.mx, (double)run_max[k]);
    }
  }
  return result;
}

Partial stretch_lanes(const TensorDesc& t, i64 start, i64 len, u64* hist) {
  Sums s = stretch_sums(t, start, len);
  if (len >= kBlock && (!t.b || t.dtype_a == t.dtype_b)) {
    const bool pair = t.b != 0;
    switch (t.dtype_a) {
      case kF32: return pair ? stretch_fast<kF32, true>(t, start, len, s, hist) : stretch_fast<kF32, false>(t, start, len, s, hist);
      case kF16: return pair ? stretch_fast<kF16, true>(t, start, len, s, hist) : stretch_fast<kF16, false>(t, start, len, s, hist);
      case kBF16: return pair ? stretch_fast<kBF16, true>(t, start, len, s, hist) : stretch_fast<kBF16, false>(t, start, len, s, hist);
      default: break;
    }
  }
  wide_add_any(t, start, len, s, hist);
  return partial_from_sums(s);
}
