// gradprobe._core: the CPU statistics pass. Argument checks and dispatch only; the maths is in
// kernels/ and csrc/cpu/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <omp.h>

#include <string>
#include <vector>

#include "capture_set.hpp"
#include "cpu/cpu_dispatch.hpp"
#include "cpu/stats_cpu.hpp"
#include "post_step_args.hpp"
#include "table_args.hpp"
#include "tensor_gather.hpp"

namespace py = pybind11;

namespace {

class CpuEngine {
 public:
  void run(const gp::bind::TableArgs& args, py::array_t<double, py::array::c_style> out,
           py::object hist, int threads) {
    const gp::i64 n = args.size();
    gp::bind::check_output(out, n, gp::kNumFields, "out");
    gp::u64* hist_ptr = gp::bind::optional_hist(hist, n);
    args.fill(descs_);
    double* out_ptr = out.mutable_data();
    py::gil_scoped_release release;
    engine_.run(descs_.data(), n, out_ptr, hist_ptr, threads);
  }

 private:
  gp::cpu::Engine engine_;
  std::vector<gp::TensorDesc> descs_;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "gradprobe CPU statistics core (fused multi-tensor pass, OpenMP, SIMD target chosen at run time)";
  gp::bind::register_constants(m);

  py::class_<gp::bind::TableArgs>(m, "TensorTable")
      .def(py::init<py::array_t<gp::i64>, py::array_t<gp::i64>, py::array_t<gp::i64>, py::array_t<int>,
                    py::array_t<int>>(),
           py::arg("a_ptrs"), py::arg("b_ptrs"), py::arg("numels"), py::arg("dtypes_a"), py::arg("dtypes_b"),
           "Raw input table: data pointers (b = 0 for single tensors), element counts, dtype codes.")
      .def("__len__", &gp::bind::TableArgs::size);

  py::class_<CpuEngine>(m, "CpuEngine")
      .def(py::init<>())
      .def("run", &CpuEngine::run, py::arg("table"), py::arg("out"), py::arg("hist"), py::arg("threads") = 0,
           "Fills out (n x NUM_FIELDS float64) and hist (n x HIST_BINS uint64, or None).");

  m.attr("CHUNK") = gp::cpu::kChunk;
  m.def(
      "plan",
      [](py::array_t<gp::i64, py::array::c_style | py::array::forcecast> numels, gp::i64 chunk) {
        if (numels.ndim() != 1) throw py::value_error("plan: numels must be 1-D");
        if (chunk <= 0) throw py::value_error("plan: chunk must be positive");
        const gp::i64 n = numels.size();
        std::vector<gp::TensorDesc> descs(static_cast<size_t>(n));
        for (gp::i64 i = 0; i < n; ++i) {
          if (numels.at(i) < 0) throw py::value_error("plan: negative element count at " + std::to_string(i));
          descs[i] = gp::TensorDesc{0, 0, numels.at(i), 0, 0, 0, 0};
        }
        std::vector<gp::Task> tasks(static_cast<size_t>(gp::plan_max_tasks(descs.data(), n, chunk)));
        const gp::i64 count = gp::plan_tasks(descs.data(), n, chunk, tasks.data());
        py::array_t<gp::i64> first({n}), num({n}), table({count, gp::i64{4}});
        for (gp::i64 i = 0; i < n; ++i) {
          first.mutable_at(i) = descs[i].first_task;
          num.mutable_at(i) = descs[i].num_tasks;
        }
        for (gp::i64 k = 0; k < count; ++k) {
          table.mutable_at(k, 0) = tasks[k].tensor_begin;
          table.mutable_at(k, 1) = tasks[k].tensor_end;
          table.mutable_at(k, 2) = tasks[k].start;
          table.mutable_at(k, 3) = tasks[k].len;
        }
        return py::make_tuple(first, num, table);
      },
      py::arg("numels"), py::arg("chunk"),
      "The work table for these element counts: (first_task, num_tasks, tasks[m, 4]).");
  m.def("gather_tensors", &gp::bind::gather_tensors, py::arg("objects"), py::arg("attr"), py::arg("codes"),
        py::arg("ptrs"), py::arg("numels"), py::arg("dtypes"), py::arg("devices"), py::arg("keys"), py::arg("status"),
        "Fills the raw table of torch tensors (or of their attribute attr, e.g. 'grad') with each row's layout\n"
        "key and status (GATHER_STATUS); returns how many were None.");
  m.def("tensor_versions", &gp::bind::tensor_versions, py::arg("objects"), py::arg("attr"), py::arg("versions"),
        py::arg("ptrs"), "Each tensor's version counter and data pointer (-1 and 0 for None).");
  m.def("install_fast_gather", &gp::bind::install_fast_gather, py::arg("capsule"),
        "Installs the libtorch metadata reader (gradprobe.torch_bridge), or removes it with None.");
  gp::bind::register_gather_constants(m);
  gp::bind::register_capture_set(m);
  m.def("has_avx512", &gp::cpu::has_avx512, "Whether this CPU has AVX-512 F/BW/DQ/VL.");
  m.def("cpu_path", &gp::cpu::cpu_target,
        "The CPU pass's SIMD target now: exact (per-element float64 reference), sse2, sse4, avx2, avx512,\n"
        "avx512-vbmi (x86), neon, sve256 (aarch64) or generic.");
  m.def("best_cpu_path", &gp::cpu::best_cpu_target, "The best compiled CPU target this CPU supports.");
  m.def("cpu_path_reason", &gp::cpu::cpu_target_reason, "Which CPU target the pass takes, and why.");
  m.def(
      "cpu_targets",
      []() {
        py::list out;
        for (const auto& t : gp::cpu::cpu_targets()) out.append(py::make_tuple(t.name, t.supported, t.needs));
        return out;
      },
      "Every CPU target this build contains, lowest first: (name, supported by this CPU, what it needs).");
  m.def(
      "set_cpu_path",
      [](const std::string& name) {
        const std::string error = gp::cpu::set_cpu_target(name);
        if (!error.empty()) throw py::value_error(error);
      },
      py::arg("name"), "Forces a CPU target this CPU supports, or 'best' (tests, benchmarks).");
  m.def("max_threads", []() { return omp_get_max_threads(); }, "OpenMP threads available.");
  m.def(
      "read_floor_sum",
      [](std::uintptr_t ptr, gp::i64 n, int threads) {
        if (n < 0) throw py::value_error("read_floor_sum: n must be >= 0");
        py::gil_scoped_release release;
        return gp::cpu::read_floor_sum(reinterpret_cast<const float*>(ptr), n, threads);
      },
      py::arg("ptr"), py::arg("n"), py::arg("threads") = 0,
      "Reads n float32 values once as fast as the current CPU target can (the memory-read floor for benchmarks).");
  m.def(
      "read_floor_many",
      [](const py::sequence& ptrs, const py::sequence& ns, int threads) {
        if (py::len(ptrs) != py::len(ns)) throw py::value_error("read_floor_many: ptrs and ns differ in length");
        std::vector<const float*> data;
        std::vector<gp::i64> counts;
        for (std::size_t i = 0; i < py::len(ptrs); ++i) {
          counts.push_back(ns[i].cast<gp::i64>());
          if (counts.back() < 0) throw py::value_error("read_floor_many: every n must be >= 0");
          data.push_back(reinterpret_cast<const float*>(ptrs[i].cast<std::uintptr_t>()));
        }
        py::gil_scoped_release release;
        return gp::cpu::read_floor_sum_many(data.data(), counts.data(), (gp::i64)counts.size(), threads);
      },
      py::arg("ptrs"), py::arg("ns"), py::arg("threads") = 0,
      "Reads every array (ns[i] float32 values at ptrs[i]) once, in one parallel region split like the "
      "statistics pass: the read floor of a tensor set.");

  m.def(
      "compact_hist",
      [](py::array_t<gp::i64, py::array::c_style | py::array::forcecast> hist) {
        if (hist.ndim() != 2) throw py::value_error("compact_hist: expected a 2-D array");
        const gp::i64 rows = hist.shape(0), bins = hist.shape(1);
        py::array_t<int16_t> lo(rows);
        py::array_t<int32_t> offsets(rows + 1);
        std::vector<gp::i64> values;
        {
          auto h = hist.unchecked<2>();
          auto l = lo.mutable_unchecked<1>();
          auto o = offsets.mutable_unchecked<1>();
          o(0) = 0;
          for (gp::i64 r = 0; r < rows; ++r) {
            gp::i64 first = 0, last = -1;
            for (gp::i64 b = 0; b < bins; ++b)
              if (h(r, b) > 0) {
                if (last < 0) first = b;
                last = b;
              }
            l(r) = static_cast<int16_t>(last < 0 ? 0 : first);
            for (gp::i64 b = first; b <= last; ++b) values.push_back(h(r, b));
            o(r + 1) = static_cast<int32_t>(values.size());
          }
        }
        py::array_t<gp::i64> out(static_cast<py::ssize_t>(values.size()));
        std::copy(values.begin(), values.end(), out.mutable_data());
        return py::make_tuple(lo, offsets, out);
      },
      py::arg("hist"),
      "Sparse rows of a histogram table: (first non-zero bin, offsets, the counts from each row's first to its last\n"
      "non-zero bin); all-zero rows are empty.");

  // The fused CPU post-step operation (csrc/post_step_args.hpp).
  gp::bind::register_post_step(m);
}
