// AVX-512 targets (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl):
// - avx512: F/BW/DQ/VL (Skylake-SP, Cascade Lake): float lanes, per-lane exponent tables;
// - avx512_vbmi: + VBMI/BITALG/GFNI (Ice Lake, Sapphire Rapids, Zen 4): the vector histogram, an
//   out-of-line call compiled for those extensions and taken only on CPUs that have them.
// The float-lane block statistics are hand-written intrinsics (tuned to ~1.1x the read floor);
// float64 inputs, rejected blocks and tails take the shared wide path (simd_wide.inl, 16 lanes).
#define GP_ISA_LOCAL 1
#include <immintrin.h>

#include "simd_targets.hpp"

#define GP_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define GP_AVX512_HIST __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,avx512bitalg,gfni")))

namespace gp::cpu::avx512 {
namespace {

#define GP_LANES 16
#include "simd_wide.inl"

constexpr i64 kFastBlock = 512;

template <int D>
GP_AVX512 inline __m512 load16(const void* base, i64 i) {
  if constexpr (D == kF32) {
    return _mm512_loadu_ps((const float*)base + i);
  } else {
    __m256i h = _mm256_loadu_si256((const __m256i*)((const unsigned short*)base + i));
    if constexpr (D == kBF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}

// Elements [i, i+32) as two float vectors. bfloat16 is the top half of a float32: one load of 32
// values gives the even ones by a shift and the odd ones by a mask (no widening shuffle). The lanes
// come out permuted, which no block statistic or bin depends on; every pass over a block reads it
// through this function, so all of them see the same permutation.
template <int D>
GP_AVX512 inline void load2(const void* base, i64 i, __m512& x0, __m512& x1) {
  if constexpr (D == kBF16) {
    const __m512i v = _mm512_loadu_si512((const void*)((const unsigned short*)base + i));
    x0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    x1 = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
  } else {
    x0 = load16<D>(base, i);
    x1 = load16<D>(base, i + 16);
  }
}

// The statistic's input x as float lanes: a, or a - b for pairs. A float difference is exact
// whenever a and b are within a factor of two (weight updates nearly always); otherwise it is
// rounded once (relative 2^-24), which leaves zero counts exact (a - b == 0 iff a == b) and the
// bin unchanged unless it rounds onto a power of two (checked in stretch_fast).
template <int D, bool kPair>
GP_AVX512 inline void load2_x(const TensorDesc& t, i64 i, __m512& x0, __m512& x1) {
  load2<D>((const void*)t.a, i, x0, x1);
  if constexpr (kPair) {
    __m512 b0, b1;
    load2<D>((const void*)t.b, i, b0, b1);
    x0 = _mm512_sub_ps(x0, b0);
    x1 = _mm512_sub_ps(x1, b1);
  }
}

// Lanes where fl(a - b) != a - b, by the error term of Knuth's TwoSum (zero iff exact).
template <int D>
GP_AVX512 inline __mmask16 inexact_difference(const TensorDesc& t, i64 i) {
  __m512 a = load16<D>((const void*)t.a, i), minus_b = _mm512_sub_ps(_mm512_setzero_ps(), load16<D>((const void*)t.b, i));
  __m512 s = _mm512_add_ps(a, minus_b);
  __m512 b_virtual = _mm512_sub_ps(s, a);
  __m512 a_virtual = _mm512_sub_ps(s, b_virtual);
  __m512 error = _mm512_add_ps(_mm512_sub_ps(a, a_virtual), _mm512_sub_ps(minus_b, b_virtual));
  return _mm512_cmp_ps_mask(error, _mm512_setzero_ps(), _CMP_NEQ_UQ);
}

template <int D>
GP_AVX512 inline bool block_has_inexact_difference(const TensorDesc& t, i64 i) {
  __mmask16 inexact = 0;
  for (i64 j = i; j < i + kFastBlock; j += 16) inexact |= inexact_difference<D>(t, j);
  return inexact != 0;
}

GP_AVX512 inline __m512d widen_sum(__m512 v) {
  __m256 lo = _mm512_castps512_ps256(v);
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  return _mm512_add_pd(_mm512_cvtps_pd(lo), _mm512_cvtps_pd(hi));
}

// Vector histogram of one finite 512-element block (float32 view of the data).
//
// The exponent field (8 bits) of 64 values is packed into one register. The block's fields
// span [lo, hi]; each window of 8 consecutive fields is counted by turning every byte into a
// one-hot bit (vpermb), transposing each 8x8 bit matrix (gf2p8affineqb), and counting the
// bits per bin (vpopcntb). Blocks spanning more than kWindows * 8 fields use the scalar loop.
constexpr int kWindows = 4;
constexpr int kVectorsPerBlock = kFastBlock / 64;
constexpr int kFlushBlocks = 255 / kVectorsPerBlock;  // blocks a byte counter holds before a flush

GP_AVX512_HIST inline int min_byte(__m512i v) {
  __m256i y = _mm256_min_epu8(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i z = _mm_min_epu8(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
  z = _mm_min_epu8(z, _mm_srli_epi16(z, 8));
  z = _mm_and_si128(z, _mm_set1_epi16(0xFF));
  return _mm_cvtsi128_si32(_mm_minpos_epu16(z)) & 0xFFFF;
}

template <int D, bool kPair>
GP_AVX512 void block_hist_scalar(const TensorDesc& t, i64 i, u64 zeros, u64* hist) {
  alignas(64) u32 field[32];
  u64 field_zero = 0;
  for (i64 j = i; j < i + kFastBlock; j += 32) {
    __m512 x0, x1;
    load2_x<D, kPair>(t, j, x0, x1);
    _mm512_store_si512((__m512i*)field, _mm512_srli_epi32(_mm512_slli_epi32(_mm512_castps_si512(x0), 1), 24));
    _mm512_store_si512((__m512i*)(field + 16), _mm512_srli_epi32(_mm512_slli_epi32(_mm512_castps_si512(x1), 1), 24));
    for (int k = 0; k < 32; ++k) {
      if (field[k]) ++hist[hist_bin_of_f32_exponent_field((int)field[k])];
      else ++field_zero;
    }
  }
  hist[0] += field_zero - zeros;  // field 0 holds exact zeros (no bin) and subnormals (bin 0)
}

template <int D, bool kPair>
GP_AVX512_HIST void block_hist(const TensorDesc& t, i64 i, u64 zeros, bool has_tiny, u64* hist) {
  // Byte 3 of each (x << 1) is the exponent field; gather bytes 3, 7, ... of four registers.
  alignas(64) static const unsigned char kGather[64] = {
      3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47, 51, 55, 59, 63,
      67, 71, 75, 79, 83, 87, 91, 95, 99, 103, 107, 111, 115, 119, 123, 127,
      3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47, 51, 55, 59, 63,
      67, 71, 75, 79, 83, 87, 91, 95, 99, 103, 107, 111, 115, 119, 123, 127};
  const __m512i gather = _mm512_load_si512((const void*)kGather);
  __m512i fields[kVectorsPerBlock];
  __m512i lo_minus_one = _mm512_set1_epi8((char)0xFF), hi = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi8(1);
  for (int v = 0; v < kVectorsPerBlock; ++v) {
    const i64 j = i + 64 * v;
    __m512 x0, x1, x2, x3;
    load2_x<D, kPair>(t, j, x0, x1);
    load2_x<D, kPair>(t, j + 32, x2, x3);
    __m512i t0 = _mm512_slli_epi32(_mm512_castps_si512(x0), 1);
    __m512i t1 = _mm512_slli_epi32(_mm512_castps_si512(x1), 1);
    __m512i t2 = _mm512_slli_epi32(_mm512_castps_si512(x2), 1);
    __m512i t3 = _mm512_slli_epi32(_mm512_castps_si512(x3), 1);
    __m512i low = _mm512_permutex2var_epi8(t0, gather, t1);
    __m512i high = _mm512_permutex2var_epi8(t2, gather, t3);
    fields[v] = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ULL, low, high);
    lo_minus_one = _mm512_min_epu8(lo_minus_one, _mm512_sub_epi8(fields[v], one));  // field 0 wraps to 255
    hi = _mm512_max_epu8(hi, fields[v]);
  }
  const int lo = min_byte(lo_minus_one) + 1;
  const int top = 255 - min_byte(_mm512_sub_epi8(_mm512_set1_epi8((char)0xFF), hi));
  const int windows = lo > top ? 0 : (top - lo) / 8 + 1;  // 0: no field above 0
  if (windows > kWindows) return block_hist_scalar<D, kPair>(t, i, zeros, hist);
  if (has_tiny) {  // zeros or subnormals present: field 0 counts both, only subnormals have a bin
    u64 field_zero = 0;
    for (int v = 0; v < kVectorsPerBlock; ++v)
      field_zero += (u64)__builtin_popcountll(_mm512_cmpeq_epi8_mask(fields[v], _mm512_setzero_si512()));
    hist[0] += field_zero - zeros;
  }
  if (windows == 0) return;

  // Offsets from lo, clamped to 63 (wrapped field 0 too); window w's one-hot table maps offsets
  // 8w..8w+7 to bits 0..7 and every other offset to 0.
  alignas(64) static const unsigned char kOneHot[kWindows][64] = {
      {1, 2, 4, 8, 16, 32, 64, 128},
      {0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128},
      {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128},
      {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128}};
  // Per-qword byte counts -> qword b holds bin b's counts of the 8 qwords, summed by vpsadbw.
  alignas(64) static const unsigned char kTranspose[64] = {
      0, 8, 16, 24, 32, 40, 48, 56, 1, 9, 17, 25, 33, 41, 49, 57, 2, 10, 18, 26, 34, 42, 50, 58,
      3, 11, 19, 27, 35, 43, 51, 59, 4, 12, 20, 28, 36, 44, 52, 60, 5, 13, 21, 29, 37, 45, 53, 61,
      6, 14, 22, 30, 38, 46, 54, 62, 7, 15, 23, 31, 39, 47, 55, 63};
  const __m512i transpose = _mm512_load_si512((const void*)kTranspose);
  const __m512i bit_select = _mm512_set1_epi64((long long)0x8040201008040201ULL);
  const __m512i vlo = _mm512_set1_epi8((char)lo), last = _mm512_set1_epi8(63);
  for (int v = 0; v < kVectorsPerBlock; ++v) fields[v] = _mm512_min_epu8(_mm512_sub_epi8(fields[v], vlo), last);
  alignas(64) u64 counts[8];
  for (int w = 0; w < windows; ++w) {
    const __m512i one_hot = _mm512_load_si512((const void*)kOneHot[w]);
    __m512i acc = _mm512_setzero_si512();
    for (int v = 0; v < kVectorsPerBlock; ++v) {
      __m512i bits = _mm512_permutexvar_epi8(fields[v], one_hot);
      // Byte b of each qword gathers bit b of the qword's 8 bytes: an 8x8 bit transpose.
      __m512i per_bin = _mm512_gf2p8affine_epi64_epi8(bit_select, bits, 0);
      acc = _mm512_add_epi8(acc, _mm512_popcnt_epi8(per_bin));
    }
    _mm512_store_si512((__m512i*)counts, _mm512_sad_epu8(_mm512_permutexvar_epi8(transpose, acc), _mm512_setzero_si512()));
    const int window_base = lo + 8 * w;
    for (int b = 0; b < 8 && window_base + b <= 255; ++b)
      if (counts[b]) hist[hist_bin_of_f32_exponent_field(window_base + b)] += counts[b];
  }
}

// Whether float lanes summed this block faithfully. Otherwise the exact path redoes it:
// - a NaN or Inf (or a float overflow of |x| or d^2) made a sum non-finite;
// - the block is not exactly constant (constant blocks, e.g. all-zero gradient rows, sum
//   exactly) and either every |x| is below 2^-60, where sums lose bits to float underflow,
//   or every d^2 lane sum is below 2^-80, where the squared deviations underflowed.
//   Above these bounds, underflowed terms weigh less than 2^-37 of the sums.
GP_AVX512 inline bool block_fits_float_lanes(__m512 l1, __m512 s2, __m512 mn, __m512 mx, __m512 shift) {
  const __m512 inf = _mm512_set1_ps(__builtin_inff());
  if (_mm512_cmp_ps_mask(_mm512_add_ps(l1, s2), inf, _CMP_LT_OQ) != 0xFFFF) return false;
  const bool constant = _mm512_cmp_ps_mask(mn, shift, _CMP_EQ_OQ) == 0xFFFF &&
                        _mm512_cmp_ps_mask(mx, shift, _CMP_EQ_OQ) == 0xFFFF;
  if (constant) return true;
  const __m512 largest = _mm512_max_ps(_mm512_abs_ps(mn), _mm512_abs_ps(mx));
  if (_mm512_cmp_ps_mask(largest, _mm512_set1_ps(0x1p-60f), _CMP_GE_OQ) == 0) return false;
  return _mm512_cmp_ps_mask(s2, _mm512_set1_ps(0x1p-80f), _CMP_GE_OQ) != 0;
}

// bfloat16's min, max and smallest |x| on its raw 16-bit lanes: 32 values per instruction, on the
// integer side rather than the float min/max the loop is short of. Positive values order as signed
// integers, negative ones by magnitude as unsigned integers: per lane the maximum is the signed
// maximum if it is non-negative, else (all negative) the unsigned minimum; the minimum is the
// unsigned maximum if it is negative, else the unsigned minimum. NaN orders wrong, but a block
// holding one is redone in float64 (its sums are not finite).
struct Bf16Extremes {
  __m512i signed_max, unsigned_max, unsigned_min, least;
  GP_AVX512 Bf16Extremes()
      : signed_max(_mm512_set1_epi16((short)-32768)), unsigned_max(_mm512_setzero_si512()),
        unsigned_min(_mm512_set1_epi16((short)-1)), least(_mm512_set1_epi16(0x7f80)) {}
  GP_AVX512 void add(__m512i raw) {
    signed_max = _mm512_max_epi16(signed_max, raw);
    unsigned_max = _mm512_max_epu16(unsigned_max, raw);
    unsigned_min = _mm512_min_epu16(unsigned_min, raw);
    least = _mm512_min_epu16(least, _mm512_and_si512(raw, _mm512_set1_epi16(0x7fff)));
  }
  // Each 32-bit lane holds two values: the low one (even) and the high one (odd).
  GP_AVX512 static __m512 even(__m512i bits) { return _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16)); }
  GP_AVX512 static __m512 odd(__m512i bits) {
    return _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32((int)0xFFFF0000u)));
  }
  GP_AVX512 __m512 max() const {
    const __m512i bits = _mm512_mask_blend_epi16(_mm512_cmpge_epi16_mask(signed_max, _mm512_setzero_si512()),
                                                 unsigned_min, signed_max);
    return _mm512_max_ps(even(bits), odd(bits));
  }
  GP_AVX512 __m512 min() const {
    const __m512i bits = _mm512_mask_blend_epi16(_mm512_cmplt_epi16_mask(unsigned_max, _mm512_setzero_si512()),
                                                 unsigned_min, unsigned_max);
    return _mm512_min_ps(even(bits), odd(bits));
  }
  GP_AVX512 bool any_zero() const { return _mm512_cmpeq_epi16_mask(least, _mm512_setzero_si512()) != 0; }
  GP_AVX512 bool any_below_normal() const { return _mm512_cmplt_epu16_mask(least, _mm512_set1_epi16(0x0080)) != 0; }
};

// A block's shift from the float lanes of the sum of n of its values: their mean (0 if not finite).
GP_AVX512 inline float shift_of_sum(__m512 sum, i64 n = kFastBlock) {
  const float mean = _mm512_reduce_add_ps(sum) * (1.0f / (float)n);
  return __builtin_isfinite(mean) ? mean : 0.0f;
}

// Sum of a block in float lanes: the block's shift, so that every block is summed around its own
// mean and an outlier at the start of a stretch cannot amplify rounding ((K - mean)^2 / var).
template <int D, bool kPair>
GP_AVX512 inline float block_mean(const TensorDesc& t, i64 i) {
  __m512 a = _mm512_setzero_ps(), b = a;
  for (i64 j = i; j < i + kFastBlock; j += 32) {
    __m512 x0, x1;
    load2_x<D, kPair>(t, j, x0, x1);
    a = _mm512_add_ps(a, x0);
    b = _mm512_add_ps(b, x1);
  }
  return shift_of_sum(_mm512_add_ps(a, b));
}

GP_AVX512 inline double reduce_wide(__m512 v) { return _mm512_reduce_add_pd(widen_sum(v)); }

// Fast path: each finite block becomes a float64 partial (n, mean, M2) merged with Chan's formula;
// blocks that fail block_fits_float_lanes and the tail accumulate exactly into `exact`.
// Table histogram (CPUs without VBMI/GFNI): each value's sign + exponent field (9 bits) counts into
// its lane's table (16 x 2 KiB), so that neighbours sharing a bin do not serialise on one counter
// (8 shared tables: 3.7x the read floor on BERT-base; 16: 3.2x).
// The tables are per thread, live across a stretch, and are folded into bins (and zeroed) at its end.
constexpr int kTables = 16;
constexpr int kTableSize = 512;

struct ExponentTables {
  alignas(64) u32 count[kTables][kTableSize + 16];  // +64 bytes: tables 4 KiB apart would alias
};

ExponentTables& thread_tables() {
  thread_local ExponentTables tables{};  // zero-initialised; every fold leaves it zeroed
  return tables;
}

template <int D, bool kPair>
GP_AVX512 void block_hist_tables(const TensorDesc& t, i64 i, ExponentTables& tables) {
  alignas(64) u32 field[32];
  for (i64 j = i; j < i + kFastBlock; j += 32) {
    __m512 x0, x1;
    load2_x<D, kPair>(t, j, x0, x1);
    _mm512_store_si512((__m512i*)field, _mm512_srli_epi32(_mm512_castps_si512(x0), 23));
    _mm512_store_si512((__m512i*)(field + 16), _mm512_srli_epi32(_mm512_castps_si512(x1), 23));
    for (int k = 0; k < 32; ++k) ++tables.count[k & (kTables - 1)][field[k]];
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

// Mask histogram (AVX-512BW without VBMI): the block's exponent fields packed to bytes (packs +
// packus: lane order scrambled, irrelevant to counting); each field between the block's smallest
// and largest non-zero field is counted by a byte compare to a mask and a masked byte add (two
// instructions per 64 values). Per-field byte counters are summed every kFlushBlocks (31) blocks (a block adds at
// most 8 per lane). Blocks spanning more than kMaxSpan fields use the exponent tables.
constexpr int kMaxSpan = 40;

struct FieldCounters {
  __m512i count[256];
  int lo = 256, top = -1, blocks = 0;
};

FieldCounters& thread_counters() {
  thread_local FieldCounters counters{};
  return counters;
}

GP_AVX512 void flush_counters(FieldCounters& c, u64* hist) {
  for (int field = c.lo; field <= c.top; ++field) {
    const u64 n = (u64)_mm512_reduce_add_epi64(_mm512_sad_epu8(c.count[field], _mm512_setzero_si512()));
    if (n) hist[hist_bin_of_f32_exponent_field(field)] += n;
    c.count[field] = _mm512_setzero_si512();
  }
  c.lo = 256;
  c.top = -1;
  c.blocks = 0;
}

GP_AVX512 inline int min_byte_bw(__m512i v) {
  __m256i y = _mm256_min_epu8(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i z = _mm_min_epu8(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
  z = _mm_min_epu8(z, _mm_srli_epi16(z, 8));
  z = _mm_and_si128(z, _mm_set1_epi16(0xFF));
  return _mm_cvtsi128_si32(_mm_minpos_epu16(z)) & 0xFFFF;
}

GP_AVX512 inline __m512i exponent_fields(__m512 x) {
  return _mm512_srli_epi32(_mm512_slli_epi32(_mm512_castps_si512(x), 1), 24);
}

template <int D, bool kPair>
GP_AVX512 bool block_hist_masks(const TensorDesc& t, i64 i, u64 zeros, bool has_tiny, FieldCounters& counters,
                                u64* hist) {
  __m512i fields[kVectorsPerBlock];
  __m512i lo_minus_one = _mm512_set1_epi8((char)0xFF), hi = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi8(1);
  for (int v = 0; v < kVectorsPerBlock; ++v) {
    const i64 j = i + 64 * v;
    __m512 x0, x1, x2, x3;
    load2_x<D, kPair>(t, j, x0, x1);
    load2_x<D, kPair>(t, j + 32, x2, x3);
    const __m512i a = _mm512_packs_epi32(exponent_fields(x0), exponent_fields(x1));
    const __m512i b = _mm512_packs_epi32(exponent_fields(x2), exponent_fields(x3));
    fields[v] = _mm512_packus_epi16(a, b);
    lo_minus_one = _mm512_min_epu8(lo_minus_one, _mm512_sub_epi8(fields[v], one));  // field 0 wraps to 255
    hi = _mm512_max_epu8(hi, fields[v]);
  }
  const int lo = min_byte_bw(lo_minus_one) + 1;
  const int top = 255 - min_byte_bw(_mm512_sub_epi8(_mm512_set1_epi8((char)0xFF), hi));
  if (lo <= top && top - lo + 1 > kMaxSpan) return false;
  if (has_tiny) {  // field 0 counts zeros (no bin) and subnormals (bin 0)
    u64 field_zero = 0;
    for (int v = 0; v < kVectorsPerBlock; ++v)
      field_zero += (u64)__builtin_popcountll(_mm512_cmpeq_epi8_mask(fields[v], _mm512_setzero_si512()));
    hist[0] += field_zero - zeros;
  }
  if (lo > top) return true;
  for (int field = lo; field <= top; ++field) {
    const __m512i f = _mm512_set1_epi8((char)field);
    __m512i count = counters.count[field];
    for (int v = 0; v < kVectorsPerBlock; ++v)
      count = _mm512_mask_add_epi8(count, _mm512_cmpeq_epi8_mask(fields[v], f), count, one);
    counters.count[field] = count;
  }
  counters.lo = lo < counters.lo ? lo : counters.lo;
  counters.top = top > counters.top ? top : counters.top;
  if (++counters.blocks == kFlushBlocks) flush_counters(counters, hist);
  return true;
}

// Base AVX-512 (F/BW/DQ/VL, e.g. Skylake-SP); kVectorHist adds the VBMI/BITALG/GFNI histogram,
// an out-of-line call made only on CPUs that have those (Ice Lake, Sapphire Rapids, Zen 4).
template <int D, bool kPair, bool kVectorHist>
GP_AVX512 Partial stretch_fast(const TensorDesc& t, i64 start, i64 len, Sums& exact, u64* hist) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 inf = _mm512_set1_ps(__builtin_inff());
  const __m512 smallest_normal = _mm512_set1_ps(__FLT_MIN__);
  Partial blocks;
  partial_init(blocks);
  __m512 run_min = inf, run_max = _mm512_set1_ps(-__builtin_inff());
  u64 table_zeros = 0;  // zeros of the blocks counted into the exponent tables
  bool tables_used = false;
  const i64 end = start + len;
  i64 i = start;
  float block_shift = block_mean<D, kPair>(t, i), next_shift = 0.0f;
  for (; i + kFastBlock <= end; i += kFastBlock, block_shift = next_shift) {
    const __m512 shift = _mm512_set1_ps(block_shift);
    // The next block's sum (its shift) is read while this block is computed: memory reads stay in
    // flight during the arithmetic and no block waits on its own mean. The last block rereads itself.
    // The hardware prefetcher follows these reads; software prefetches 8 KiB ahead made the pass
    // slower (1.2x the read floor against 1.0x; they paid off only before this pipelining).
    const i64 next_offset = i + 2 * kFastBlock <= end ? kFastBlock : 0;
    __m512 next_a = zero, next_b = zero;
    __m512 s1a = zero, s1b = zero, s2a = zero, s2b = zero, l1a = zero, l1b = zero;
    __m512 mina = inf, minb = inf, maxa = _mm512_sub_ps(zero, inf), maxb = maxa, tiny = inf;
    __mmask16 powers_of_two = 0;  // pairs: non-zero differences whose mantissa is 0
    constexpr bool kRaw = D == kBF16 && !kPair;  // bfloat16 extremes from the raw lanes
    Bf16Extremes raw_extremes;
    for (i64 j = i; j < i + kFastBlock; j += 32) {
      __m512 y0, y1;
      load2_x<D, kPair>(t, j + next_offset, y0, y1);
      next_a = _mm512_add_ps(next_a, y0);
      if constexpr (D != kBF16) next_b = _mm512_add_ps(next_b, y1);  // bfloat16: y0 shares y1's line
      __m512 x0, x1;
      __m512i raw;
      if constexpr (kRaw) {
        raw = _mm512_loadu_si512((const void*)((const unsigned short*)t.a + j));
        x0 = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
        x1 = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32((int)0xFFFF0000u)));
      } else {
        load2_x<D, kPair>(t, j, x0, x1);
      }
      __m512 d0 = _mm512_sub_ps(x0, shift), d1 = _mm512_sub_ps(x1, shift);
      __m512 a0 = _mm512_abs_ps(x0), a1 = _mm512_abs_ps(x1);
      s1a = _mm512_add_ps(s1a, d0);
      s1b = _mm512_add_ps(s1b, d1);
      s2a = _mm512_fmadd_ps(d0, d0, s2a);
      s2b = _mm512_fmadd_ps(d1, d1, s2b);
      l1a = _mm512_add_ps(l1a, a0);
      l1b = _mm512_add_ps(l1b, a1);
      if constexpr (kRaw) {
        raw_extremes.add(raw);
      } else {
        mina = _mm512_min_ps(mina, x0);
        minb = _mm512_min_ps(minb, x1);
        maxa = _mm512_max_ps(maxa, x0);
        maxb = _mm512_max_ps(maxb, x1);
        tiny = _mm512_min_ps(tiny, _mm512_min_ps(a0, a1));  // smallest |x|: zeros are counted only if it is 0
      }
      if constexpr (kPair) {
        const __m512i mantissa = _mm512_set1_epi32(0x7FFFFF);
        powers_of_two |= _mm512_mask_testn_epi32_mask(_mm512_cmp_ps_mask(x0, zero, _CMP_NEQ_UQ),
                                                      _mm512_castps_si512(x0), mantissa);
        powers_of_two |= _mm512_mask_testn_epi32_mask(_mm512_cmp_ps_mask(x1, zero, _CMP_NEQ_UQ),
                                                      _mm512_castps_si512(x1), mantissa);
      }
    }
    next_shift = shift_of_sum(_mm512_add_ps(next_a, next_b), D == kBF16 ? kFastBlock / 2 : kFastBlock);
    if constexpr (kPair) {
      // A rounded float difference changes histogram bin only when it rounds onto a power of two;
      // such a block is checked exactly (TwoSum) and, if inexact, redone in float64.
      if (powers_of_two && block_has_inexact_difference<D>(t, i)) {
        wide_add_any(t, i, kFastBlock, exact, hist);
        continue;
      }
    }
    const __m512 l1 = _mm512_add_ps(l1a, l1b), s2 = _mm512_add_ps(s2a, s2b);
    const __m512 block_min = kRaw ? raw_extremes.min() : _mm512_min_ps(mina, minb);
    const __m512 block_max = kRaw ? raw_extremes.max() : _mm512_max_ps(maxa, maxb);
    const bool any_zero = kRaw ? raw_extremes.any_zero() : _mm512_cmp_ps_mask(tiny, zero, _CMP_EQ_OQ) != 0;
    const bool any_tiny = kRaw ? raw_extremes.any_below_normal()
                               : _mm512_cmp_ps_mask(tiny, smallest_normal, _CMP_LT_OQ) != 0;
    if (!block_fits_float_lanes(l1, s2, block_min, block_max, shift)) {
      wide_add_any(t, i, kFastBlock, exact, hist);
      continue;
    }
    u64 zeros = 0;
    if (any_zero) {
      // Counted in vector lanes, not by popcounts of the 16-bit compare masks: GCC 12 -O3 gave
      // wrong counts for those once this loop was unrolled (masks spilled to the stack with kmovw).
      __m512i count = _mm512_setzero_si512();
      for (i64 j = i; j < i + kFastBlock; j += 32) {
        __m512 x0, x1;
        load2_x<D, kPair>(t, j, x0, x1);
        count = _mm512_sub_epi32(count, _mm512_movm_epi32(_mm512_cmp_ps_mask(x0, zero, _CMP_EQ_OQ)));
        count = _mm512_sub_epi32(count, _mm512_movm_epi32(_mm512_cmp_ps_mask(x1, zero, _CMP_EQ_OQ)));
      }
      zeros = (u64)_mm512_reduce_add_epi32(count);
    }
    const double n = (double)kFastBlock, s1_sum = reduce_wide(_mm512_add_ps(s1a, s1b));
    const double m2 = reduce_wide(s2) - s1_sum * (s1_sum / n);
    Partial block{n, (double)block_shift + s1_sum / n, m2 > 0 ? m2 : 0.0, reduce_wide(l1),
                  __builtin_inf(), -__builtin_inf(), (double)zeros, 0, 0};
    partial_merge(blocks, block);
    run_min = _mm512_min_ps(run_min, block_min);
    run_max = _mm512_max_ps(run_max, block_max);
    if (hist) {
      if constexpr (kVectorHist) {
        block_hist<D, kPair>(t, i, zeros, any_tiny, hist);
      } else if (!block_hist_masks<D, kPair>(t, i, zeros, any_tiny,
                                             thread_counters(), hist)) {
        block_hist_tables<D, kPair>(t, i, thread_tables());
        table_zeros += zeros;
        tables_used = true;
      }
    }
  }
  if (i < end) wide_add_any(t, i, end - i, exact, hist);
  if constexpr (!kVectorHist) {
    if (hist) {
      if (tables_used) fold_tables(thread_tables(), table_zeros, hist);
      flush_counters(thread_counters(), hist);
    }
  }
  Partial result = partial_from_sums(exact);
  partial_merge(result, blocks);
  if (blocks.n > 0) {
    result.mn = min_value(result.mn, (double)_mm512_reduce_min_ps(run_min));
    result.mx = max_value(result.mx, (double)_mm512_reduce_max_ps(run_max));
  }
  return result;
}

GP_AVX512 double read_floor_avx512(const float* data, i64 n) {
  __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
  i64 i = 0;
  for (; i + 64 <= n; i += 64) {
    a = _mm512_add_ps(a, _mm512_loadu_ps(data + i));
    b = _mm512_add_ps(b, _mm512_loadu_ps(data + i + 16));
    c = _mm512_add_ps(c, _mm512_loadu_ps(data + i + 32));
    d = _mm512_add_ps(d, _mm512_loadu_ps(data + i + 48));
  }
  double sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
  for (; i < n; ++i) sum += data[i];
  return sum;
}

// Statistics of elements [start, start+len) of one input; exact parts shift by its first element.
template <bool kVectorHist>
Partial stretch_fast_any(const TensorDesc& t, i64 start, i64 len, Sums& s, u64* hist, bool* taken) {
  *taken = true;
  if (!t.b) {
    switch (t.dtype_a) {
      case kF32: return stretch_fast<kF32, false, kVectorHist>(t, start, len, s, hist);
      case kF16: return stretch_fast<kF16, false, kVectorHist>(t, start, len, s, hist);
      case kBF16: return stretch_fast<kBF16, false, kVectorHist>(t, start, len, s, hist);
      default: break;
    }
  } else if (t.dtype_a == t.dtype_b) {
    switch (t.dtype_a) {
      case kF32: return stretch_fast<kF32, true, kVectorHist>(t, start, len, s, hist);
      case kF16: return stretch_fast<kF16, true, kVectorHist>(t, start, len, s, hist);
      case kBF16: return stretch_fast<kBF16, true, kVectorHist>(t, start, len, s, hist);
      default: break;
    }
  }
  *taken = false;
  return Partial{};
}

template <bool kVectorHist>
Partial stretch(const TensorDesc& t, i64 start, i64 len, u64* hist) {
  Sums s = stretch_sums(t, start, len);
  if (len >= kFastBlock) {
    bool taken = false;
    Partial p = stretch_fast_any<kVectorHist>(t, start, len, s, hist, &taken);
    if (taken) return p;
  }
  wide_add_any(t, start, len, s, hist);
  return partial_from_sums(s);
}

double read_floor(const float* data, i64 n) { return read_floor_avx512(data, n); }

}  // namespace

extern const Kernels kernels = {&stretch<false>, &read_floor};

}  // namespace gp::cpu::avx512

namespace gp::cpu::avx512_vbmi {
extern const Kernels kernels = {&avx512::stretch<true>, &avx512::read_floor};
}  // namespace gp::cpu::avx512_vbmi
