// gradprobe._core: the CPU statistics pass. Argument checks and dispatch only; the maths is in
// kernels/ and csrc/cpu/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <omp.h>

#include <string>
#include <vector>

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
  m.doc() = "gradprobe CPU statistics core (fused multi-tensor pass, OpenMP, AVX-512 where present)";
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
        py::arg("ptrs"), py::arg("numels"), py::arg("dtypes"), py::arg("devices"),
        "Fills the raw table of torch tensors (or of their attribute attr, e.g. 'grad'); returns how many were None.");
  m.def("has_avx512", &gp::cpu::has_avx512, "Whether the AVX-512 fast path runs on this CPU.");
  m.def(
      "cpu_path", []() {
        static const char* names[] = {"exact", "avx512", "avx512-vbmi"};
        return std::string(names[static_cast<int>(gp::cpu::cpu_path())]);
      },
      "The CPU pass's fast path: exact (scalar float64), avx512, or avx512-vbmi (vector histogram).");
  m.def(
      "set_cpu_path",
      [](const std::string& name) {
        gp::cpu::CpuPath path;
        if (name == "exact") path = gp::cpu::CpuPath::kExact;
        else if (name == "avx512") path = gp::cpu::CpuPath::kAvx512;
        else if (name == "avx512-vbmi") path = gp::cpu::CpuPath::kAvx512Vbmi;
        else if (name == "best") path = gp::cpu::best_cpu_path();
        else throw py::value_error("cpu path must be exact, avx512, avx512-vbmi or best, not '" + name + "'");
        if (!gp::cpu::set_cpu_path(path)) throw py::value_error("this CPU cannot take the '" + name + "' path");
      },
      py::arg("name"), "Forces a CPU fast path at or below what this CPU supports (tests, benchmarks).");
  m.def("max_threads", []() { return omp_get_max_threads(); }, "OpenMP threads available.");
  m.def(
      "read_floor_sum",
      [](std::uintptr_t ptr, gp::i64 n, int threads) {
        if (n < 0) throw py::value_error("read_floor_sum: n must be >= 0");
        py::gil_scoped_release release;
        return gp::cpu::read_floor_sum(reinterpret_cast<const float*>(ptr), n, threads);
      },
      py::arg("ptr"), py::arg("n"), py::arg("threads") = 0,
      "Reads n float32 values once as fast as possible (the memory-read floor for benchmarks).");

  // The fused CPU post-step operation (csrc/post_step_args.hpp).
  gp::bind::register_post_step(m);
}
