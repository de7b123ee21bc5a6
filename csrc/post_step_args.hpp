// The fused post-step operation (CPU only) as _core exposes it: a table plus, per row, the output
// row of one side of a pair alone and the pair flags (csrc/cpu/stats_cpu.hpp, PairExtra). Kept
// apart from TableArgs, so the general table, the CUDA module and the NVRTC kernels know nothing of it.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/stats_cpu.hpp"
#include "table_args.hpp"

namespace gp::bind {

class PostStepArgs {
 public:
  PostStepArgs(TableArgs table, py::array_t<i64> rows, py::array_t<i64> flags)
      : table_(std::move(table)), rows_(std::move(rows)), flags_(std::move(flags)) {
    const i64 n = table_.size();
    if (rows_.ndim() != 1 || rows_.size() != n || flags_.ndim() != 1 || flags_.size() != n)
      throw py::value_error("PostStepTable: rows and flags need one entry per tensor");
    for (i64 i = 0; i < n; ++i) {
      const i64 row = rows_.at(i), flag = flags_.at(i);
      if ((row >= 0 || flag) && table_.b(i) == 0 && table_.numel(i) > 0)
        throw py::value_error("tensor " + std::to_string(i) + ": a snapshot row and flags need a pair (b)");
      if ((flag & cpu::kCopyAToB) && !table_.same_dtypes(i))
        throw py::value_error("tensor " + std::to_string(i) + ": the snapshot refresh needs a and b of one dtype");
      if (row >= 0 && row < n) throw py::value_error("tensor " + std::to_string(i) + ": an extra row must be >= n");
      extra_rows_ = std::max<i64>(extra_rows_, row + 1 - n);
    }
  }

  i64 size() const { return table_.size(); }
  i64 output_rows() const { return size() + extra_rows_; }

  void fill(std::vector<TensorDesc>& descs, std::vector<cpu::PairExtra>& extras) const {
    table_.fill(descs);
    extras.resize(static_cast<size_t>(size()));
    for (i64 i = 0; i < size(); ++i) extras[i] = cpu::PairExtra{rows_.at(i), flags_.at(i)};
  }

 private:
  TableArgs table_;
  py::array_t<i64> rows_, flags_;
  i64 extra_rows_ = 0;
};

class PostStepEngine {
 public:
  void run(const PostStepArgs& args, py::array_t<double, py::array::c_style> out, py::object hist, int threads) {
    const i64 rows = args.output_rows();
    check_output(out, rows, kNumFields, "out");
    u64* hist_ptr = optional_hist(hist, rows);
    args.fill(descs_, extras_);
    double* out_ptr = out.mutable_data();
    py::gil_scoped_release release;
    engine_.run(descs_.data(), args.size(), out_ptr, hist_ptr, threads, extras_.data());
  }

 private:
  cpu::Engine engine_;
  std::vector<TensorDesc> descs_;
  std::vector<cpu::PairExtra> extras_;
};

inline void register_post_step(py::module_& m) {
  py::class_<PostStepArgs>(m, "PostStepTable")
      .def(py::init<TableArgs, py::array_t<i64>, py::array_t<i64>>(), py::arg("table"), py::arg("rows"),
           py::arg("flags"),
           "A pair/single table for the fused post-step pass: per row, the output row of one side of the pair\n"
           "alone (-1: none) and flags (COPY_A_TO_B, NO_HIST_FOR_A, ROW_OF_B).")
      .def("__len__", &PostStepArgs::size)
      .def_property_readonly("output_rows", &PostStepArgs::output_rows);
  py::class_<PostStepEngine>(m, "PostStepEngine")
      .def(py::init<>())
      .def("run", &PostStepEngine::run, py::arg("table"), py::arg("out"), py::arg("hist"), py::arg("threads") = 0,
           "Fills out (output_rows x NUM_FIELDS) and hist (or None) and refreshes the snapshots as flagged.");
}

}  // namespace gp::bind
