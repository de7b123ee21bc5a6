// Argument checking shared by the binding modules: the raw input table and the output buffers.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "../kernels/work_plan.hpp"
#include "cpu/stats_cpu.hpp"
#include "cuda/cuda_engine.hpp"

namespace gp::bind {

namespace py = pybind11;

// The native ABI, exported once: Python reads every constant from here (gradprobe.stats._layout)
// instead of writing it again.
inline void register_constants(py::module_& m) {
#ifdef GRADPROBE_VERSION
  m.attr("__version__") = GRADPROBE_VERSION;  // pyproject.toml's, passed by CMake
#endif
  m.attr("HIST_BINS") = kHistBins;
  m.attr("HIST_EXP_MIN") = kHistExpMin;
  m.attr("HIST_EXP_MAX") = kHistExpMax;
  m.attr("NUM_FIELDS") = static_cast<int>(kNumFields);
  // In enum Field order (kernels/stats_math.hpp); the static_assert keeps the two in step.
  static const char* const field_names[] = {"numel", "finite", "l2", "l1", "min", "max", "mean", "std", "zeros",
                                            "nans", "infs"};
  static_assert(sizeof(field_names) / sizeof(field_names[0]) == kNumFields, "one name per statistic field");
  py::list fields;
  for (const char* name : field_names) fields.append(name);
  m.attr("FIELDS") = py::tuple(fields);
  m.attr("COUNT_FIELDS") = py::make_tuple("numel", "finite", "zeros", "nans", "infs");
  py::dict dtypes;
  dtypes["float32"] = static_cast<int>(kF32);
  dtypes["float16"] = static_cast<int>(kF16);
  dtypes["bfloat16"] = static_cast<int>(kBF16);
  dtypes["float64"] = static_cast<int>(kF64);
  m.attr("DTYPE_CODES") = dtypes;
  m.attr("CPU_CHUNK") = cpu::kChunk;
  m.attr("GPU_CHUNK") = cuda::kChunk;
  m.attr("PARTIAL_DOUBLES") = kPartialDoubles;
  m.attr("COPY_A_TO_B") = cpu::kCopyAToB;
  m.attr("NO_HIST_FOR_A") = cpu::kNoHistForA;
  m.attr("ROW_OF_B") = cpu::kRowOfB;
  // The TensorDesc layout, for mirrors that build descriptors in Python (the CuPy backend).
  py::dict desc;
  desc["a"] = py::make_tuple(offsetof(TensorDesc, a), sizeof(TensorDesc::a));
  desc["b"] = py::make_tuple(offsetof(TensorDesc, b), sizeof(TensorDesc::b));
  desc["numel"] = py::make_tuple(offsetof(TensorDesc, numel), sizeof(TensorDesc::numel));
  desc["dtype_a"] = py::make_tuple(offsetof(TensorDesc, dtype_a), sizeof(TensorDesc::dtype_a));
  desc["dtype_b"] = py::make_tuple(offsetof(TensorDesc, dtype_b), sizeof(TensorDesc::dtype_b));
  desc["first_task"] = py::make_tuple(offsetof(TensorDesc, first_task), sizeof(TensorDesc::first_task));
  desc["num_tasks"] = py::make_tuple(offsetof(TensorDesc, num_tasks), sizeof(TensorDesc::num_tasks));
  m.attr("TENSOR_DESC_FIELDS") = desc;  // name -> (offset, size) in bytes, in declaration order
  m.attr("TENSOR_DESC_SIZE") = sizeof(TensorDesc);
  m.attr("TASK_SIZE") = sizeof(Task);
}

// The input table as the Python side builds it: five parallel 1-D arrays.
class TableArgs {
 public:
  TableArgs(py::array_t<i64> a, py::array_t<i64> b, py::array_t<i64> numel, py::array_t<int> dtype_a,
            py::array_t<int> dtype_b)
      : a_(std::move(a)), b_(std::move(b)), numel_(std::move(numel)), dtype_a_(std::move(dtype_a)),
        dtype_b_(std::move(dtype_b)) {
    const py::ssize_t n = a_.size();
    for (auto* arr : {&a_, &b_, &numel_}) {
      if (arr->ndim() != 1 || arr->size() != n) throw py::value_error("TensorTable: arrays must be 1-D of equal length");
    }
    for (auto* arr : {&dtype_a_, &dtype_b_}) {
      if (arr->ndim() != 1 || arr->size() != n) throw py::value_error("TensorTable: arrays must be 1-D of equal length");
    }
    auto av = a_.unchecked<1>();
    auto nv = numel_.unchecked<1>();
    auto da = dtype_a_.unchecked<1>();
    auto db = dtype_b_.unchecked<1>();
    for (py::ssize_t i = 0; i < n; ++i) {
      if (nv(i) < 0) throw py::value_error("tensor " + std::to_string(i) + ": negative element count");
      if (da(i) < kF32 || da(i) > kF64 || db(i) < kF32 || db(i) > kF64)
        throw py::value_error("tensor " + std::to_string(i) + ": unknown dtype code");
      if (nv(i) > 0 && av(i) == 0) throw py::value_error("tensor " + std::to_string(i) + ": null data pointer");
    }
  }

  i64 size() const { return static_cast<i64>(a_.size()); }
  i64 b(i64 i) const { return b_.at(i); }
  i64 numel(i64 i) const { return numel_.at(i); }
  bool same_dtypes(i64 i) const { return dtype_a_.at(i) == dtype_b_.at(i); }

  void fill(std::vector<TensorDesc>& descs) const {
    const i64 n = size();
    descs.resize(static_cast<size_t>(n));
    auto av = a_.unchecked<1>();
    auto bv = b_.unchecked<1>();
    auto nv = numel_.unchecked<1>();
    auto da = dtype_a_.unchecked<1>();
    auto db = dtype_b_.unchecked<1>();
    for (i64 i = 0; i < n; ++i)
      descs[i] = TensorDesc{static_cast<u64>(av(i)), static_cast<u64>(bv(i)), nv(i), da(i), db(i), 0, 0};
  }

 private:
  py::array_t<i64> a_, b_, numel_;
  py::array_t<int> dtype_a_, dtype_b_;
};

template <class T>
void check_output(const py::array_t<T, py::array::c_style>& arr, i64 rows, i64 cols, const char* name) {
  if (arr.ndim() != 2 || arr.shape(0) != rows || arr.shape(1) != cols || !arr.writeable())
    throw py::value_error(std::string(name) + ": expected a writeable C-contiguous array of shape (" +
                          std::to_string(rows) + ", " + std::to_string(cols) + ")");
}

inline u64* optional_hist(py::object hist, i64 rows) {
  if (hist.is_none()) return nullptr;
  if (!py::isinstance<py::array_t<u64, py::array::c_style>>(hist))
    throw py::value_error("hist: expected a C-contiguous uint64 array");
  auto arr = py::cast<py::array_t<u64, py::array::c_style>>(hist);
  check_output(arr, rows, kHistBins, "hist");
  return arr.mutable_data();
}

}  // namespace gp::bind
