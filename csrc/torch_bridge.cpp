// gradprobe._torch_bridge: reads torch tensors' metadata (data pointer, element count, dtype,
// device, shape, strides, storage extent, version counter) through libtorch itself, ~20 ns a tensor
// where the CPython API takes ~1 us (about ten Python-level calls per tensor). The probe reads every
// parameter's gradient on every step, so this is most of its host cost on a short step.
//
// Built only against the torch found at build time, and loaded only when the running torch is that
// same build (gradprobe/torch_bridge.py checks the version and C++ ABI before importing it): the
// THPVariable layout is private to each torch release. gradprobe._core never links libtorch; it
// takes this reader as a function pointer (a PyCapsule) and falls back to the CPython API without it.
#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

#include <utility>
#include <vector>

#include "tensor_layout.hpp"

namespace {

using gp::i64;
using namespace gp::layout;

int dtype_code(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float: return gp::kF32;
    case c10::ScalarType::Half: return gp::kF16;
    case c10::ScalarType::BFloat16: return gp::kBF16;
    case c10::ScalarType::Double: return gp::kF64;
    default: return -1;
  }
}

void read_row(const at::Tensor& t, i64 row, const GatherRows& out, std::vector<std::pair<i64, i64>>& dims) {
  out.numels[row] = t.numel();
  const int code = dtype_code(t.scalar_type());
  out.dtypes[row] = code;
  out.devices[row] = t.is_cuda() ? t.get_device() : -1;
  out.ptrs[row] = out.keys[row] = 0;
  const bool readable_kind = t.layout() == c10::kStrided && (t.is_cpu() || t.is_cuda()) && t.has_storage();
  if (code < 0 || !readable_kind) {
    out.status[row] = kGatherUnsupported;
    return;
  }
  const i64 ptr = reinterpret_cast<i64>(t.unsafeGetTensorImpl()->storage().data()) == 0
                      ? 0
                      : reinterpret_cast<i64>(t.const_data_ptr());
  out.ptrs[row] = ptr;
  dims.clear();
  const auto sizes = t.sizes();
  const auto strides = t.strides();
  for (size_t j = 0; j < sizes.size(); ++j) dims.emplace_back(strides[j], sizes[j]);
  out.keys[row] = layout_key(code, dims);
  if (out.numels[row] == 0) {
    out.status[row] = kGatherInPlace;
    return;
  }
  if (ptr == 0) {  // freed storage (FSDP's resize_(0)), or no data
    out.status[row] = kGatherUnsupported;
    return;
  }
  out.status[row] = read_status(dims, code, t.storage_offset(), static_cast<i64>(t.storage().nbytes()));
}

// The FastGather of tensor_layout.hpp.
int gather(PyObject* objects, int attr, const GatherRows* rows, int versions_only, i64* missing) {
  if (!PyList_Check(objects)) return 0;
  const Py_ssize_t n = PyList_GET_SIZE(objects);
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!THPVariable_CheckExact(PyList_GET_ITEM(objects, i))) return 0;  // a subclass (DTensor ...): Python reads it
  }
  std::vector<std::pair<i64, i64>> dims;
  i64 none = 0;
  try {
    for (Py_ssize_t i = 0; i < n; ++i) {
      const at::Tensor& object = THPVariable_Unpack(PyList_GET_ITEM(objects, i));
      const at::Tensor& t = attr == kAttrGrad ? object.grad() : object;
      if (!t.defined()) {
        ++none;
        rows->ptrs[i] = 0;
        if (rows->versions != nullptr) rows->versions[i] = -1;
        if (!versions_only) {
          rows->numels[i] = rows->keys[i] = 0;
          rows->dtypes[i] = rows->devices[i] = rows->status[i] = kGatherMissing;
        }
        continue;
      }
      if (rows->versions != nullptr) rows->versions[i] = static_cast<i64>(t._version());
      if (versions_only) {
        rows->ptrs[i] = t.has_storage() && t.unsafeGetTensorImpl()->storage().data() != nullptr
                            ? reinterpret_cast<i64>(t.const_data_ptr())
                            : 0;
        continue;
      }
      read_row(t, i, *rows, dims);
    }
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return -1;
  }
  *missing = none;
  return 1;
}

PyObject* capsule(PyObject*, PyObject*) {
  return PyCapsule_New(reinterpret_cast<void*>(&gather), "gradprobe.torch_bridge.FastGather", nullptr);
}

PyMethodDef methods[] = {
    {"capsule", capsule, METH_NOARGS, "The reader, as a PyCapsule for gradprobe._core.install_fast_gather."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_torch_bridge",
                      "Reads torch tensors' metadata through libtorch (see csrc/torch_bridge.cpp).", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__torch_bridge() { return PyModule_Create(&module); }
