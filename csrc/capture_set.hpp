// A fixed list of torch tensors that a probe measures again and again on the CPU (its parameters,
// or their gradients): the gather (libtorch reader or CPython API), the work table and the fused
// pass in one native call, the pass with the GIL released, results in a few reusable slots. No
// per-call allocation, no per-tensor Python. Whatever it cannot read in place (a row that needs a
// copy, is refused, lives on a GPU, or changed its layout since it was first seen) it leaves to the
// Python path (gradprobe/probe/tensor_table.py), which handles and reports those cases.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <vector>

#include "cpu/stats_cpu.hpp"
#include "tensor_gather.hpp"

namespace gp::bind {

namespace py = pybind11;

class CaptureSet {
 public:
  static constexpr int kPythonPath = -1;  // something to copy, refuse, rebuild or read on a GPU
  static constexpr int kNoSlot = -2;      // every slot holds results not yet released

  CaptureSet(py::list objects, py::object attr, py::dict codes, int slots)
      : objects_(std::move(objects)), attr_(std::move(attr)), codes_(std::move(codes)),
        n_(static_cast<i64>(py::len(objects_))) {
    if (slots < 1) throw py::value_error("CaptureSet: slots must be at least 1");
    const auto n = static_cast<size_t>(n_);
    ptrs_.resize(n);
    numels_.resize(n);
    keys_.resize(n);
    first_keys_.assign(n, 0);
    dtypes_.resize(n);
    devices_.resize(n);
    status_.resize(n);
    seen_.assign(n, 0);
    present_rows_.reserve(n);
    for (int i = 0; i < slots; ++i) slots_.push_back(std::make_unique<Slot>(n_));
  }

  i64 size() const { return n_; }

  // Measures the current tensors into a free slot; returns its index, kPythonPath or kNoSlot.
  int run(bool histogram, int threads) {
    const GatherRows rows{ptrs_.data(), numels_.data(), dtypes_.data(), devices_.data(), keys_.data(),
                          status_.data(), nullptr};
    gather_rows(objects_, attr_, codes_, rows);
    present_rows_.clear();
    descs_.clear();
    for (i64 i = 0; i < n_; ++i) {
      if (status_[i] == kGatherMissing) continue;
      if (status_[i] != kGatherInPlace || devices_[i] != -1) return kPythonPath;
      if (seen_[i] && keys_[i] != first_keys_[i]) return kPythonPath;  // resized, dtype or strides changed
      seen_[i] = 1;
      first_keys_[i] = keys_[i];
      present_rows_.push_back(i);
      descs_.push_back(TensorDesc{static_cast<u64>(ptrs_[i]), 0, numels_[i], dtypes_[i], dtypes_[i], 0, 0});
    }
    Slot* slot = nullptr;
    int index = 0;
    for (; index < static_cast<int>(slots_.size()); ++index) {
      bool expected = false;
      if (slots_[index]->busy.compare_exchange_strong(expected, true)) {
        slot = slots_[index].get();
        break;
      }
    }
    if (slot == nullptr) return kNoSlot;
    if (histogram && slot->hist.size() == 0) slot->hist = py::array_t<u64>({n_, i64{kHistBins}});
    slot->histogram = histogram;
    const i64 m = static_cast<i64>(present_rows_.size());
    const bool all_present = m == n_;
    auto present = slot->present.mutable_unchecked<1>();
    for (i64 i = 0; i < n_; ++i) present(i) = status_[i] != kGatherMissing;
    double* out = slot->table.mutable_data();
    u64* hist = histogram ? slot->hist.mutable_data() : nullptr;
    if (!all_present) {  // computed compact, then spread over the slot's rows (absent: NaN and 0)
      compact_.resize(static_cast<size_t>(m * kNumFields));
      compact_hist_.resize(histogram ? static_cast<size_t>(m * kHistBins) : 0);
    }
    {
      py::gil_scoped_release release;
      engine_.run(descs_.data(), m, all_present ? out : compact_.data(),
                  histogram ? (all_present ? hist : compact_hist_.data()) : nullptr, threads);
    }
    if (!all_present) spread(out, hist, m);
    return index;
  }

  // (table (n, fields) float64, histogram (n, bins) uint64 or None, present (n,) bool) of a slot:
  // the slot's own arrays, valid until release().
  py::tuple slot(int index) const {
    const Slot& s = checked(index);
    return py::make_tuple(s.table, s.histogram ? py::object(s.hist) : py::none(), s.present);
  }

  void release(int index) { checked(index).busy.store(false); }

 private:
  struct Slot {
    explicit Slot(i64 n) : table({n, i64{kNumFields}}), present(n) {}
    py::array_t<double> table;
    py::array_t<u64> hist;
    py::array_t<bool> present;
    bool histogram = false;
    std::atomic<bool> busy{false};
  };

  const Slot& checked(int index) const {
    if (index < 0 || index >= static_cast<int>(slots_.size())) throw py::index_error("CaptureSet: no such slot");
    return *slots_[index];
  }
  Slot& checked(int index) { return const_cast<Slot&>(static_cast<const CaptureSet*>(this)->checked(index)); }

  void spread(double* out, u64* hist, i64 m) const {
    const double nan = nan_value();
    for (i64 i = 0; i < n_; ++i) {  // absent rows: NaN moments, zero counts
      double* row = out + i * kNumFields;
      for (int f = 0; f < kNumFields; ++f) row[f] = nan;
      for (int f : {kNumel, kFinite, kZeros, kNans, kInfs}) row[f] = 0.0;
      if (hist != nullptr) std::fill(hist + i * kHistBins, hist + (i + 1) * kHistBins, u64{0});
    }
    for (i64 j = 0; j < m; ++j) {
      const i64 i = present_rows_[j];
      std::copy(compact_.begin() + j * kNumFields, compact_.begin() + (j + 1) * kNumFields, out + i * kNumFields);
      if (hist != nullptr)
        std::copy(compact_hist_.begin() + j * kHistBins, compact_hist_.begin() + (j + 1) * kHistBins,
                  hist + i * kHistBins);
    }
  }

  py::list objects_;
  py::object attr_;
  py::dict codes_;
  i64 n_;
  std::vector<i64> ptrs_, numels_, keys_, first_keys_;
  std::vector<int> dtypes_, devices_, status_;
  std::vector<char> seen_;
  std::vector<i64> present_rows_;
  std::vector<TensorDesc> descs_;
  std::vector<double> compact_;
  std::vector<u64> compact_hist_;
  std::vector<std::unique_ptr<Slot>> slots_;
  cpu::Engine engine_;
};

inline void register_capture_set(py::module_& m) {
  py::class_<CaptureSet>(m, "CaptureSet")
      .def(py::init<py::list, py::object, py::dict, int>(), py::arg("objects"), py::arg("attr"), py::arg("codes"),
           py::arg("slots") = 16,
           "A fixed list of tensors (or their attribute `attr`, e.g. 'grad') measured on the CPU in one native call.")
      .def("__len__", &CaptureSet::size)
      .def("run", &CaptureSet::run, py::arg("histogram"), py::arg("threads") = 0,
           "Measures into a free slot: its index, or PYTHON_PATH (-1) or NO_SLOT (-2).")
      .def("slot", &CaptureSet::slot, py::arg("index"), "(table, hist or None, present) of a slot, until release().")
      .def("release", &CaptureSet::release, py::arg("index"), "Frees a slot for reuse.")
      .def_readonly_static("PYTHON_PATH", &CaptureSet::kPythonPath)
      .def_readonly_static("NO_SLOT", &CaptureSet::kNoSlot);
}

}  // namespace gp::bind
