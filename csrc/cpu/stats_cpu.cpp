// CPU twin: the fused pass over the (tensor, chunk) work table, OpenMP over tasks. Each stretch of
// an input goes to the SIMD target chosen at run time (cpu_dispatch.cpp; kernels in target_*.cpp).
#include "stats_cpu.hpp"

#include <omp.h>

#include <algorithm>
#include <utility>
#include <vector>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu_dispatch.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define GP_X86 1
#define GP_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#endif

namespace gp::cpu {
namespace {

// Statistics of elements [start, start+len) of one input, by the current target.
Partial stretch(const TensorDesc& t, i64 start, i64 len, u64* hist) {
  return current_kernels().stretch(t, start, len, hist);
}

#ifdef GP_X86
GP_AVX512 void stream_copy_avx512(char* dst, const char* src, size_t bytes) {
  size_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
    __m512i a = _mm512_loadu_si512(src + i), b = _mm512_loadu_si512(src + i + 64);
    __m512i c = _mm512_loadu_si512(src + i + 128), d = _mm512_loadu_si512(src + i + 192);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), a);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i + 64), b);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i + 128), c);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i + 192), d);
  }
  _mm_sfence();
  if (i < bytes) std::memcpy(dst + i, src + i, bytes - i);
}

#endif

}  // namespace

bool has_avx512() {
#ifdef GP_X86
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

namespace {

int element_bytes(int dtype) { return dtype == kF32 ? 4 : (dtype == kF64 ? 8 : 2); }

// Copies a's elements [start, start+len) into b. The source was just read (cache-hot); the
// destination is written with streaming stores so it does not evict what the next chunk needs.
void copy_a_to_b(const TensorDesc& t, i64 start, i64 len) {
  if (len <= 0) return;
  const size_t bytes = static_cast<size_t>(len) * element_bytes(t.dtype_a);
  const char* src = reinterpret_cast<const char*>(t.a) + static_cast<size_t>(start) * element_bytes(t.dtype_a);
  char* dst = reinterpret_cast<char*>(t.b) + static_cast<size_t>(start) * element_bytes(t.dtype_a);
#ifdef GP_X86
  static const bool fast = has_avx512();
  if (fast && bytes >= (1u << 16) && (reinterpret_cast<uintptr_t>(dst) % 64) == 0) {
    stream_copy_avx512(dst, src, bytes);
    return;
  }
#endif
  std::memcpy(dst, src, bytes);
}

// The descriptor of one side of a pair alone, for its extra row: a, or b with kRowOfB.
TensorDesc first_of_pair(const TensorDesc& t, i64 flags) {
  TensorDesc single = t;
  if (flags & kRowOfB) {
    single.a = t.b;
    single.dtype_a = t.dtype_b;
  }
  single.b = 0;
  single.dtype_b = single.dtype_a;
  return single;
}

// float64 inputs beyond ~1e154 overflow the float64 sum of squares of the fused pass, whose l2,
// std or mean then read inf. Such a row is recomputed here, reading the tensor once more with every
// value scaled by a power of two (exact) so that |x| < 1: the moments are then finite, and are
// scaled back; only a result that is itself beyond the float64 range stays inf. A rare path, so a
// plain loop. Counts, min, max and the histogram of the fused pass are kept.
bool overflowed(const TensorDesc& t, const double* row) {
  const bool float64 = t.dtype_a == kF64 || (t.b && t.dtype_b == kF64);
  return float64 && row[kFinite] > 0 &&
         !(is_finite(row[kL2]) && is_finite(row[kStd]) && is_finite(row[kMean]));
}

void recompute_rescaled(const TensorDesc& t, double* row) {
  const double largest = std::max(std::fabs(row[kMin]), std::fabs(row[kMax]));
  int exponent = 0;
  std::frexp(largest, &exponent);  // largest < 2^exponent
  Sums s;
  bool started = false;
  for (i64 i = 0; i < t.numel; ++i) {
    const double x = load_input((const void*)t.a, t.dtype_a, (const void*)t.b, t.dtype_b, i);
    if (!is_finite(x)) continue;
    const double scaled = std::ldexp(x, -exponent);  // exact: a power-of-two scaling
    if (!started) {
      sums_init(s, scaled);
      started = true;
    }
    sums_add(s, scaled);
  }
  if (!started) return;
  const Partial p = partial_from_sums(s);
  // Scaled back with ldexp (2^exponent itself may be beyond float64); inf only if the true value is.
  row[kMean] = std::ldexp(p.mean, exponent);
  row[kStd] = std::ldexp(std::sqrt(p.m2 / p.n), exponent);
  row[kL2] = std::ldexp(std::sqrt(p.m2 + p.n * p.mean * p.mean), exponent);
}

}  // namespace

void Engine::run(TensorDesc* tensors, i64 n, double* out, u64* hist, int threads, const PairExtra* pairs) {
  if (n <= 0) return;
  static const PairExtra kNone{-1, 0};
  auto extra = [&](i64 i) -> const PairExtra& { return pairs ? pairs[i] : kNone; };
  bool extras = false;
  for (i64 i = 0; i < n && pairs; ++i) extras |= pairs[i].row >= 0 || pairs[i].flags != 0;
  // A pair pass that also reads `a` alone and copies it keeps a chunk of both arrays in L2.
  const i64 chunk = extras ? kPairChunk : kChunk;
  tasks_.resize((size_t)plan_max_tasks(tensors, n, chunk));
  const i64 num_tasks = plan_tasks(tensors, n, chunk, tasks_.data());
  const i64 slots = extras ? 2 * num_tasks : num_tasks;  // second slot: `a` alone
  partials_.resize((size_t)(slots * kPartialDoubles));
  if (hist) partial_hist_.resize((size_t)(slots * kHistBins));

  i64 total = 0;
  for (i64 i = 0; i < n; ++i) total += tensors[i].numel;
  int num_threads = threads > 0 ? threads : omp_get_max_threads();
  if (total < kParallelThreshold) num_threads = 1;

  const Task* tasks = tasks_.data();
  double* partials = partials_.data();
  u64* partial_hist = hist ? partial_hist_.data() : nullptr;
  auto hist_row = [&](u64* base, i64 row) -> u64* {
    if (!base) return nullptr;
    u64* r = base + row * kHistBins;
    std::memset(r, 0, sizeof(u64) * kHistBins);
    return r;
  };
  // a's own row: its histogram is zeroed and, with kNoHistForA, left out of the pass.
  auto a_hist_row = [&](u64* base, const PairExtra& e, i64 row) -> u64* {
    u64* r = hist_row(base, row);
    return (e.flags & kNoHistForA) ? nullptr : r;
  };

#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads) if (num_threads > 1)
  for (i64 k = 0; k < num_tasks; ++k) {
    const Task& task = tasks[k];
    if (task_is_packed(task)) {
      for (i64 ti = task.tensor_begin; ti < task.tensor_end; ++ti) {
        const TensorDesc& t = tensors[ti];
        const PairExtra& e = extra(ti);
        partial_finalize(stretch(t, 0, t.numel, hist_row(hist, ti)), out + ti * kNumFields);
        if (e.row >= 0)
          partial_finalize(stretch(first_of_pair(t, e.flags), 0, t.numel, a_hist_row(hist, e, e.row)),
                           out + e.row * kNumFields);
        if (e.flags & kCopyAToB) copy_a_to_b(t, 0, t.numel);
      }
    } else {
      const TensorDesc& t = tensors[task.tensor_begin];
      const PairExtra& e = extra(task.tensor_begin);
      partial_store(stretch(t, task.start, task.len, hist_row(partial_hist, k)), partials + k * kPartialDoubles);
      if (e.row >= 0)
        partial_store(stretch(first_of_pair(t, e.flags), task.start, task.len,
                              a_hist_row(partial_hist, e, num_tasks + k)),
                      partials + (num_tasks + k) * kPartialDoubles);
      if (e.flags & kCopyAToB) copy_a_to_b(t, task.start, task.len);
    }
  }

  // Chunk-split tensors: merge their partials in chunk order (deterministic).
  auto merge_into = [&](const TensorDesc& t, i64 slot_offset, i64 row) {
    Partial p;
    partial_init(p);
    for (i64 k = t.first_task; k < t.first_task + t.num_tasks; ++k)
      partial_merge(p, partial_load(partials + (slot_offset + k) * kPartialDoubles));
    partial_finalize(p, out + row * kNumFields);
    if (hist) {
      u64* dst = hist + row * kHistBins;
      std::memset(dst, 0, sizeof(u64) * kHistBins);
      for (i64 k = t.first_task; k < t.first_task + t.num_tasks; ++k)
        for (int j = 0; j < kHistBins; ++j) dst[j] += partial_hist[(slot_offset + k) * kHistBins + j];
    }
  };
  for (i64 ti = 0; ti < n; ++ti) {
    const TensorDesc& t = tensors[ti];
    if (t.num_tasks == 0) continue;
    merge_into(t, 0, ti);
    if (extra(ti).row >= 0) merge_into(t, num_tasks, extra(ti).row);
  }
  for (i64 ti = 0; ti < n; ++ti) {
    const TensorDesc& t = tensors[ti];
    const PairExtra& e = extra(ti);
    // After a snapshot refresh (kCopyAToB) b holds a: the pair can no longer be reread.
    if (!(e.flags & kCopyAToB) && overflowed(t, out + ti * kNumFields)) recompute_rescaled(t, out + ti * kNumFields);
    const bool b_overwritten = (e.flags & kCopyAToB) && (e.flags & kRowOfB);
    if (e.row >= 0 && !b_overwritten && overflowed(first_of_pair(t, e.flags), out + e.row * kNumFields))
      recompute_rescaled(first_of_pair(t, e.flags), out + e.row * kNumFields);
  }
}

double read_floor_sum(const float* data, i64 n, int threads) {
  int num_threads = threads > 0 ? threads : omp_get_max_threads();
  double total = 0;
  const i64 per = (n + num_threads - 1) / num_threads;
  const Kernels& kernels = current_kernels();
#pragma omp parallel for reduction(+ : total) num_threads(num_threads) schedule(static, 1)
  for (int w = 0; w < num_threads; ++w) {
    i64 begin = std::min(n, (i64)w * per), end = std::min(n, begin + per);
    total += kernels.read_floor(data + begin, end - begin);
  }
  return total;
}

double read_floor_sum_many(const float* const* data, const i64* n, i64 count, int threads) {
  // The same work split as Engine::run (chunks of kChunk values, handed out dynamically, one
  // parallel region for the whole set), so that the floor carries no per-tensor overhead the
  // statistics pass does not have.
  std::vector<std::pair<const float*, i64>> chunks;
  for (i64 t = 0; t < count; ++t)
    for (i64 start = 0; start < n[t]; start += kChunk) chunks.emplace_back(data[t] + start, std::min(kChunk, n[t] - start));
  const int num_threads = threads > 0 ? threads : omp_get_max_threads();
  const Kernels& kernels = current_kernels();
  double total = 0;
  const i64 num_chunks = (i64)chunks.size();
#pragma omp parallel for reduction(+ : total) num_threads(num_threads) schedule(dynamic, 1)
  for (i64 k = 0; k < num_chunks; ++k) total += kernels.read_floor(chunks[k].first, chunks[k].second);
  return total;
}

}  // namespace gp::cpu
