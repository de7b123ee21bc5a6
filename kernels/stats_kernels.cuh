// The fused multi-tensor statistics kernel. One launch covers every tensor of a call:
// each block takes tasks from the work table (kernels/work_plan.hpp); chunk tasks leave a
// partial, and the last block to finish a tensor merges its partials (Chan) in chunk order.
// Compiled by nvcc (csrc/cuda) and at run time by NVRTC through CuPy (python/gradprobe/stats).
#pragma once

#include "stats_math.hpp"
#include "work_plan.hpp"

namespace gp {

constexpr int kBlockThreads = 512;
constexpr int kBlockWarps = kBlockThreads / 32;

__device__ __forceinline__ void warp_reduce_sums(Sums& s) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    s.n += __shfl_down_sync(0xffffffffu, s.n, offset);
    s.s1 += __shfl_down_sync(0xffffffffu, s.s1, offset);
    s.s2 += __shfl_down_sync(0xffffffffu, s.s2, offset);
    s.l1 += __shfl_down_sync(0xffffffffu, s.l1, offset);
    s.mn = min_value(s.mn, __shfl_down_sync(0xffffffffu, s.mn, offset));
    s.mx = max_value(s.mx, __shfl_down_sync(0xffffffffu, s.mx, offset));
    s.zeros += __shfl_down_sync(0xffffffffu, s.zeros, offset);
    s.nans += __shfl_down_sync(0xffffffffu, s.nans, offset);
    s.infs += __shfl_down_sync(0xffffffffu, s.infs, offset);
  }
}

__device__ __forceinline__ void warp_merge_partials(Partial& p) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    Partial o;
    o.n = __shfl_down_sync(0xffffffffu, p.n, offset);
    o.mean = __shfl_down_sync(0xffffffffu, p.mean, offset);
    o.m2 = __shfl_down_sync(0xffffffffu, p.m2, offset);
    o.l1 = __shfl_down_sync(0xffffffffu, p.l1, offset);
    o.mn = __shfl_down_sync(0xffffffffu, p.mn, offset);
    o.mx = __shfl_down_sync(0xffffffffu, p.mx, offset);
    o.zeros = __shfl_down_sync(0xffffffffu, p.zeros, offset);
    o.nans = __shfl_down_sync(0xffffffffu, p.nans, offset);
    o.infs = __shfl_down_sync(0xffffffffu, p.infs, offset);
    partial_merge(p, o);
  }
}

struct BlockShared {
  u32 hist[kHistBins];
  Sums sums[kBlockWarps];
  Partial partials[kBlockWarps];
  int is_last;
};

// Every warp walks the stretch in lock-step (the loop bound is warp-uniform), so lanes that share
// a histogram bin can add once: __match_any_sync groups them, the lowest lane adds the count.
template <int DA, int DB, bool kPair>
__device__ Sums block_stretch(const TensorDesc& t, i64 start, i64 len, BlockShared& sh, bool want_hist) {
  const void* a = (const void*)t.a;
  const void* b = (const void*)t.b;
  double first = 0;
  if (len > 0) {
    first = load_element(a, DA, start);
    if (kPair) first -= load_element(b, DB, start);
  }
  Sums s;
  sums_init(s, shift_for(first));
  const int lane = threadIdx.x & 31;
  const i64 end = start + len;
  for (i64 base = start + (threadIdx.x - lane); base < end; base += kBlockThreads) {
    const i64 i = base + lane;
    int bin = -1;
    if (i < end) {
      double x = load_element(a, DA, i);
      if (kPair) x -= load_element(b, DB, i);
      bin = sums_add(s, x);
    }
    if (want_hist) {
      unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (bin >= 0 && lane == __ffs(peers) - 1) atomicAdd(&sh.hist[bin], (u32)__popc(peers));
    }
  }
  // Block reduction; the result is valid in thread 0.
  warp_reduce_sums(s);
  const int warp = threadIdx.x >> 5;
  if (lane == 0) sh.sums[warp] = s;
  __syncthreads();
  if (warp == 0) {
    if (lane < kBlockWarps) s = sh.sums[lane];
    else sums_init(s, s.shift);
    warp_reduce_sums(s);
  }
  return s;
}

template <int DA>
__device__ Sums block_stretch_pair(const TensorDesc& t, i64 start, i64 len, BlockShared& sh, bool want_hist) {
  switch (t.dtype_b) {
    case kF32: return block_stretch<DA, kF32, true>(t, start, len, sh, want_hist);
    case kF16: return block_stretch<DA, kF16, true>(t, start, len, sh, want_hist);
    case kBF16: return block_stretch<DA, kBF16, true>(t, start, len, sh, want_hist);
    default: return block_stretch<DA, kF64, true>(t, start, len, sh, want_hist);
  }
}

__device__ Sums block_stretch_any(const TensorDesc& t, i64 start, i64 len, BlockShared& sh, bool want_hist) {
  if (t.b) {
    switch (t.dtype_a) {
      case kF32: return block_stretch_pair<kF32>(t, start, len, sh, want_hist);
      case kF16: return block_stretch_pair<kF16>(t, start, len, sh, want_hist);
      case kBF16: return block_stretch_pair<kBF16>(t, start, len, sh, want_hist);
      default: return block_stretch_pair<kF64>(t, start, len, sh, want_hist);
    }
  }
  switch (t.dtype_a) {
    case kF32: return block_stretch<kF32, kF32, false>(t, start, len, sh, want_hist);
    case kF16: return block_stretch<kF16, kF16, false>(t, start, len, sh, want_hist);
    case kBF16: return block_stretch<kBF16, kBF16, false>(t, start, len, sh, want_hist);
    default: return block_stretch<kF64, kF64, false>(t, start, len, sh, want_hist);
  }
}

__device__ void clear_block_hist(BlockShared& sh) {
  for (int j = threadIdx.x; j < kHistBins; j += kBlockThreads) sh.hist[j] = 0;
  __syncthreads();
}

// Partials come from other blocks of this launch: read them past L1, which is not coherent
// and may hold a neighbouring task's line from an earlier merge.
__device__ __forceinline__ Partial load_partial_uncached(const double* in) {
  double v[kPartialDoubles];
  for (int f = 0; f < kPartialDoubles; ++f) v[f] = __ldcg(in + f);
  return partial_load(v);
}

// Merges a chunk-split tensor's partials in chunk order: each thread a strided run, then the warps.
__device__ void block_merge_tensor(const TensorDesc& t, i64 ti, const double* partials, const u32* partial_hist,
                                   double* out, u64* out_hist, bool want_hist, BlockShared& sh) {
  Partial p;
  partial_init(p);
  for (i64 k = t.first_task + threadIdx.x; k < t.first_task + t.num_tasks; k += kBlockThreads)
    partial_merge(p, load_partial_uncached(partials + k * kPartialDoubles));
  warp_merge_partials(p);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh.partials[warp] = p;
  __syncthreads();
  if (warp == 0) {
    if (lane < kBlockWarps) p = sh.partials[lane];
    else partial_init(p);
    warp_merge_partials(p);
    if (lane == 0) partial_finalize(p, out + ti * kNumFields);
  }
  if (want_hist) {
    for (int j = threadIdx.x; j < kHistBins; j += kBlockThreads) {
      u64 count = 0;
      for (i64 k = t.first_task; k < t.first_task + t.num_tasks; ++k) count += __ldcg(partial_hist + k * kHistBins + j);
      out_hist[ti * kHistBins + j] = count;
    }
  }
}

}  // namespace gp

// done_counters: one per tensor, zero between calls (the merging block resets its own).
extern "C" __global__ void __launch_bounds__(gp::kBlockThreads)
    gp_stats_kernel(const gp::TensorDesc* tensors, const gp::Task* tasks, long long num_tasks, double* partials,
                    unsigned int* partial_hist, unsigned int* done_counters, double* out,
                    unsigned long long* out_hist, int want_hist) {
  using namespace gp;
  __shared__ BlockShared sh;
  for (i64 k = blockIdx.x; k < num_tasks; k += gridDim.x) {
    const Task task = tasks[k];
    if (task_is_packed(task)) {
      for (i64 ti = task.tensor_begin; ti < task.tensor_end; ++ti) {
        const TensorDesc t = tensors[ti];
        clear_block_hist(sh);
        Sums s = block_stretch_any(t, 0, t.numel, sh, want_hist);
        __syncthreads();
        if (threadIdx.x == 0) partial_finalize(partial_from_sums(s), out + ti * kNumFields);
        if (want_hist)
          for (int j = threadIdx.x; j < kHistBins; j += kBlockThreads) out_hist[ti * kHistBins + j] = sh.hist[j];
        __syncthreads();
      }
      continue;
    }
    const i64 ti = task.tensor_begin;
    const TensorDesc t = tensors[ti];
    clear_block_hist(sh);
    Sums s = block_stretch_any(t, task.start, task.len, sh, want_hist);
    __syncthreads();
    if (threadIdx.x == 0) partial_store(partial_from_sums(s), partials + k * kPartialDoubles);
    if (want_hist)
      for (int j = threadIdx.x; j < kHistBins; j += kBlockThreads) partial_hist[k * kHistBins + j] = sh.hist[j];
    // Publish this partial, then count it; the block that completes the tensor merges it.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned int previous = atomicAdd(&done_counters[ti], 1u);
      sh.is_last = previous == (unsigned int)(t.num_tasks - 1);
    }
    __syncthreads();
    if (sh.is_last) {
      __threadfence();
      block_merge_tensor(t, ti, partials, partial_hist, out, out_hist, want_hist, sh);
      if (threadIdx.x == 0) done_counters[ti] = 0;
    }
    __syncthreads();
  }
}
