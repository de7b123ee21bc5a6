// The float-lane fast path, written once over vector extensions (see simd_wide.inl) and compiled
// per target. Same numerics as the AVX-512 path: float lanes accumulate at most a 512-element
// block around the block's own mean, the block becomes a float64 partial (n, mean, M2) merged
// with Chan's formula; blocks that fail the faithfulness checks and the tail go to the wide path.
// Include after simd_wide.inl; defines this target's `kernels` table.

constexpr i64 kBlock = 512;
constexpr i64 kTables = 16;  // per-lane exponent tables: neighbours sharing a bin do not serialise
constexpr int kTableSize = 512;  // sign + exponent field

template <int D, bool kPair>
inline vf load_x(const TensorDesc& t, i64 i) {
  const vf a = load_f<D>((const void*)t.a, i);
  if constexpr (kPair) return a - load_f<D>((const void*)t.b, i);
  else return a;
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

// The block's own mean as its shift: an outlier at the start of a stretch cannot amplify rounding.
template <int D, bool kPair>
inline float block_mean(const TensorDesc& t, i64 i) {
  vf a = splat<vf>(0.0f), b = a;
  for (i64 j = i; j < i + kBlock; j += 2 * W) {
    a += load_x<D, kPair>(t, j);
    b += load_x<D, kPair>(t, j + W);
  }
  const float mean = (float)sum_lanes(a + b) * (1.0f / kBlock);
  return __builtin_isfinite(mean) ? mean : 0.0f;
}

struct ExponentTables {
  alignas(64) u32 count[kTables][kTableSize];
};

ExponentTables& thread_tables() {
  thread_local ExponentTables tables{};  // zero-initialised; every fold leaves it zeroed
  return tables;
}

template <int D, bool kPair>
void block_hist_tables(const TensorDesc& t, i64 i, ExponentTables& tables) {
  for (i64 j = i; j < i + kBlock; j += W) {
    const vu field = (vu)load_x<D, kPair>(t, j) >> 23;
    for (int k = 0; k < W; ++k) ++tables.count[(j - i + k) & (kTables - 1)][field[k]];
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
  const i64 end = start + len;
  i64 i = start;
  for (; i + kBlock <= end; i += kBlock) {
    const float block_shift = block_mean<D, kPair>(t, i);
    const vf shift = splat<vf>(block_shift);
    vf s1a = zero, s1b = zero, s2a = zero, s2b = zero, l1a = zero, l1b = zero;
    vf mina = inf, minb = inf, maxa = minus_inf, maxb = minus_inf, tiny = inf;
    vi powers_of_two = {};  // pairs: non-zero differences whose mantissa is 0
    for (i64 j = i; j < i + kBlock; j += 2 * W) {
      const vf x0 = load_x<D, kPair>(t, j), x1 = load_x<D, kPair>(t, j + W);
      const vf d0 = x0 - shift, d1 = x1 - shift;
      const vf a0 = abs_lanes(x0), a1 = abs_lanes(x1);
      s1a += d0;
      s1b += d1;
      s2a += d0 * d0;
      s2b += d1 * d1;
      l1a += a0;
      l1b += a1;
      mina = x0 < mina ? x0 : mina;
      minb = x1 < minb ? x1 : minb;
      maxa = x0 > maxa ? x0 : maxa;
      maxb = x1 > maxb ? x1 : maxb;
      const vf a01 = a0 < a1 ? a0 : a1;
      tiny = a01 < tiny ? a01 : tiny;  // smallest |x|: zeros are counted only if it is 0
      if constexpr (kPair) {
        powers_of_two |= (x0 != zero) & (((vu)x0 & mantissa) == 0u);
        powers_of_two |= (x1 != zero) & (((vu)x1 & mantissa) == 0u);
      }
    }
    if constexpr (kPair) {
      // A rounded float difference changes bin only when it rounds onto a power of two.
      if (any_lane(powers_of_two) && block_has_inexact_difference<D>(t, i)) {
        wide_add_any(t, i, kBlock, exact, hist);
        continue;
      }
    }
    const vf l1 = l1a + l1b, s2 = s2a + s2b;
    const vf block_min = mina < minb ? mina : minb, block_max = maxa > maxb ? maxa : maxb;
    if (!block_fits_float_lanes(l1, s2, block_min, block_max, shift)) {
      wide_add_any(t, i, kBlock, exact, hist);
      continue;
    }
    u64 zeros = 0;
    if (any_lane(tiny == zero)) {
      vi count = {};
      for (i64 j = i; j < i + kBlock; j += W) count -= load_x<D, kPair>(t, j) == zero;
      for (int k = 0; k < W; ++k) zeros += (u64)count[k];
    }
    const double n = (double)kBlock, s1_sum = sum_lanes(s1a + s1b);
    const double m2 = sum_lanes(s2) - s1_sum * (s1_sum / n);
    Partial block{n, (double)block_shift + s1_sum / n, m2 > 0 ? m2 : 0.0, sum_lanes(l1),
                  __builtin_inf(), -__builtin_inf(), (double)zeros, 0, 0};
    partial_merge(blocks, block);
    run_min = block_min < run_min ? block_min : run_min;
    run_max = block_max > run_max ? block_max : run_max;
    if (hist) {
      block_hist_tables<D, kPair>(t, i, thread_tables());
      table_zeros += zeros;
    }
  }
  if (i < end) wide_add_any(t, i, end - i, exact, hist);
  if (hist) fold_tables(thread_tables(), table_zeros, hist);
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
