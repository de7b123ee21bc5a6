// The CPU twin of the fused statistics pass.
#pragma once

#include <vector>

#include "../../kernels/work_plan.hpp"

namespace gp::cpu {

// Elements per chunk task; tensors at or below it are packed whole.
constexpr i64 kChunk = i64{1} << 18;
// Elements per chunk when a pair is also read alone and copied: both arrays' chunks stay in L2.
constexpr i64 kPairChunk = i64{1} << 16;
// Below this many elements in one call the pass stays on the calling thread:
// waking threads costs more than it saves on small inputs and busy machines.
constexpr i64 kParallelThreshold = i64{1} << 20;

bool has_avx512();  // F, BW, DQ, VL: streaming copies of the post-step pass

// The fused post-step operation (CPU only): for a pair (a - b), also the statistics of one side
// alone into output row `row` (-1: none): `a`, or `b` with kRowOfB; by flags, leave that row's
// histogram out (kNoHistForA) and copy a into b after reading while the chunk is hot (kCopyAToB).
struct PairExtra {
  i64 row;
  i64 flags;
};
constexpr i64 kCopyAToB = 1;
constexpr i64 kNoHistForA = 2;
constexpr i64 kRowOfB = 4;

// Reusable state: the work table and partial buffers grow to the largest call and are kept.
class Engine {
 public:
  // tensors: n descriptors (their task fields are overwritten); out: rows x kNumFields float64,
  // rows = n plus the pairs' extra rows; hist: rows x kHistBins counts, or null to skip the
  // histogram. threads <= 0 means all cores. pairs: null, or n PairExtra (the post-step pass).
  void run(TensorDesc* tensors, i64 n, double* out, u64* hist, int threads, const PairExtra* pairs = nullptr);

 private:
  std::vector<Task> tasks_;
  std::vector<double> partials_;
  std::vector<u64> partial_hist_;
};

// Sums the bytes as float32 as fast as the memory allows: the read floor that benchmarks compare to.
double read_floor_sum(const float* data, i64 n, int threads);
// The same over many arrays in one parallel region, split like the statistics pass.
double read_floor_sum_many(const float* const* data, const i64* n, i64 count, int threads);

}  // namespace gp::cpu
