// What the kernels may read of a strided tensor: its layout key and read status, from its shape,
// strides and storage extent. Shared by the two ways of reading torch tensors' metadata: through
// the CPython API (tensor_gather.hpp, any torch version) and through libtorch itself
// (torch_bridge.cpp, only when built against the running torch). No pybind11 here.
#pragma once
#include <Python.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "../kernels/stats_math.hpp"

namespace gp::layout {

// Row status (exported to Python as GATHER_STATUS).
enum GatherStatus : int {
  kGatherMissing = -1,     // the object (or its attribute) is None
  kGatherInPlace = 0,      // dense, inside its storage: read numel elements from the pointer
  kGatherNeedsCopy = 1,    // strided but not dense (slice with steps, expanded, overlapping): copy first
  kGatherOutside = 2,      // the strides reach outside the storage: never read
  kGatherUnsupported = 3,  // no readable strided data (sparse, meta, freed storage) or an unsupported dtype
};

// The elements the strides span (max offset + 1), and whether they are dense and non-overlapping.
struct Extent {
  i64 span = 0;
  bool dense = false;
  bool negative = false;
};

inline Extent layout_extent(const std::vector<std::pair<i64, i64>>& dims) {  // (stride, size) pairs
  Extent e;
  i64 numel = 1;
  for (auto [stride, size] : dims) numel *= size;
  if (numel == 0) {
    e.dense = true;
    return e;
  }
  std::vector<std::pair<i64, i64>> sorted;
  for (auto [stride, size] : dims) {
    if (stride < 0) e.negative = true;
    if (size != 1) sorted.emplace_back(stride, size);
    if (size > 1) e.span += (stride < 0 ? -stride : stride) * (size - 1);
  }
  e.span += 1;
  std::sort(sorted.begin(), sorted.end());
  i64 expected = 1;
  e.dense = !e.negative;
  for (auto [stride, size] : sorted) {
    if (stride != expected) e.dense = false;
    expected *= size;
  }
  return e;
}

inline u64 mix_key(u64 h, i64 v) {
  h ^= static_cast<u64>(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

inline constexpr u64 kKeySeed = 0x51ed270b27a1c3d5ULL;

inline int dtype_bytes(int code) { return code == kF64 ? 8 : (code == kF32 ? 4 : 2); }

// The layout key of (dtype, shape, strides): equal keys, equal layouts (to hash collisions).
inline i64 layout_key(int dtype_code, const std::vector<std::pair<i64, i64>>& dims) {
  u64 key = mix_key(kKeySeed, dtype_code);
  for (auto [stride, size] : dims) key = mix_key(mix_key(key, size), stride);
  return static_cast<i64>(mix_key(key, static_cast<i64>(dims.size())));
}

// The status of a strided tensor with a non-null pointer and numel > 0: storage_offset and the
// storage's size in bytes say whether every element the strides reach lies inside the storage.
inline int read_status(const std::vector<std::pair<i64, i64>>& dims, int dtype_code, i64 storage_offset,
                       i64 storage_nbytes) {
  const Extent extent = layout_extent(dims);
  // Torch's strides are non-negative; a negative one (never seen from torch) is refused.
  const bool inside = !extent.negative && storage_offset >= 0 &&
                      (storage_offset + extent.span) * dtype_bytes(dtype_code) <= storage_nbytes;
  return !inside ? kGatherOutside : (extent.dense ? kGatherInPlace : kGatherNeedsCopy);
}

// The output rows of one gather (one entry per object); versions may be null.
struct GatherRows {
  i64* ptrs;
  i64* numels;
  int* dtypes;
  int* devices;
  i64* keys;
  int* status;
  i64* versions;
};

// What the tensor of each row is: the object itself, or its .grad.
enum GatherAttr : int { kAttrSelf = 0, kAttrGrad = 1 };

// A reader of torch tensors' metadata without Python calls per tensor (torch_bridge.cpp). Fills
// `rows` for every object of the list and returns 1; returns 0 without touching `rows` when it
// cannot read every object (one is not exactly a torch.Tensor or Parameter: the caller reads
// through Python); -1 with a Python exception set on an error. `missing` gets the count of None rows.
// versions_only: fill only ptrs and versions.
typedef int (*FastGather)(PyObject* objects, int attr, const GatherRows* rows, int versions_only, i64* missing);

}  // namespace gp::layout
