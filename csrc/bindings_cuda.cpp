// gradprobe._cuda: the CUDA statistics pass. Argument checks and dispatch only.
// Built only when nvcc is found; the CUDA runtime is linked statically, so this module imports
// on machines without a driver and status() says why CUDA cannot be used there.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "cuda/cuda_engine.hpp"
#include "table_args.hpp"

namespace py = pybind11;

namespace {

class CudaEngine {
 public:
  CudaEngine(int device, int max_slots) : engine_(device, max_slots) {}

  int launch(const gp::bind::TableArgs& args, std::uintptr_t stream, bool hist) {
    args.fill(descs_);
    return engine_.launch(descs_, stream, hist);
  }

  void read(int slot, py::array_t<double, py::array::c_style> out, py::object hist) {
    const gp::i64 n = out.ndim() == 2 ? out.shape(0) : -1;
    gp::bind::check_output(out, n, gp::kNumFields, "out");
    gp::u64* hist_ptr = gp::bind::optional_hist(hist, n);
    double* out_ptr = out.mutable_data();
    py::gil_scoped_release release;
    engine_.read(slot, out_ptr, hist_ptr);
  }

  gp::cuda::Engine engine_;

 private:
  std::vector<gp::TensorDesc> descs_;
};

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "gradprobe CUDA statistics core (one fused launch per call, results via pinned memory)";
  gp::bind::register_constants(m);
  m.attr("CHUNK") = gp::cuda::kChunk;

  m.def("status", []() {
    gp::cuda::Status s = gp::cuda::status();
    py::dict d;
    d["usable"] = s.usable;
    d["device_count"] = s.device_count;
    d["runtime_version"] = s.runtime_version;
    d["driver_version"] = s.driver_version;
    d["reason"] = s.reason;
    return d;
  }, "Whether CUDA can run here, and if not, why.");

  py::class_<CudaEngine>(m, "CudaEngine")
      .def(py::init<int, int>(), py::arg("device"), py::arg("max_slots") = gp::cuda::kDefaultMaxSlots,
           "Result slots (pinned host memory) form a ring of at most max_slots.")
      .def("launch", &CudaEngine::launch, py::arg("table"), py::arg("stream"), py::arg("hist"),
           "Enqueues the pass on the stream (a cudaStream_t as int); returns a result slot, or -1 (nothing\n"
           "launched) while every slot holds an unread result. No host sync.")
      .def("ready", [](CudaEngine& e, int slot) { return e.engine_.ready(slot); }, py::arg("slot"))
      .def("read", &CudaEngine::read, py::arg("slot"), py::arg("out"), py::arg("hist"),
           "Copies a slot's results into out/hist, waiting for them if needed.")
      .def("release", [](CudaEngine& e, int slot) { e.engine_.release(slot); }, py::arg("slot"))
      .def_property_readonly("num_slots", [](CudaEngine& e) { return e.engine_.num_slots(); })
      .def_property_readonly("max_slots", [](CudaEngine& e) { return e.engine_.max_slots(); })
      .def_property_readonly("launches", [](CudaEngine& e) { return e.engine_.launches(); })
      .def_property_readonly("device", [](CudaEngine& e) { return e.engine_.device(); });
}
