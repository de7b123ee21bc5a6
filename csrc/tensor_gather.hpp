// Reads the raw table of many torch tensors in one call, through the CPython API: no per-tensor
// Python work on the training thread. Knows nothing of libtorch: it calls the tensors' own
// methods (data_ptr, numel, dtype, get_device), exactly what Python code would.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "../kernels/stats_math.hpp"

namespace gp::bind {

namespace py = pybind11;

// For each object (or its attribute `attr`, e.g. "grad"): data pointer (0 when None), element
// count, dtype code (from `codes`, keyed by dtype object; -1 when unsupported) and device
// (-1 for CPU, else the CUDA index). Returns how many were None.
inline i64 gather_tensors(py::list objects, py::object attr, py::dict codes, py::array_t<i64> ptrs,
                          py::array_t<i64> numels, py::array_t<int> dtypes, py::array_t<int> devices) {
  const py::ssize_t n = static_cast<py::ssize_t>(py::len(objects));
  for (py::ssize_t size : {ptrs.size(), numels.size(), dtypes.size(), devices.size()})
    if (size != n) throw py::value_error("gather: output arrays must have one entry per object");
  auto p = ptrs.mutable_unchecked<1>();
  auto e = numels.mutable_unchecked<1>();
  auto d = dtypes.mutable_unchecked<1>();
  auto dev = devices.mutable_unchecked<1>();
  // Raw C API with interned names: pybind's attr()/cast() wrappers cost more than the calls.
  static PyObject* name_data_ptr = PyUnicode_InternFromString("data_ptr");
  static PyObject* name_numel = PyUnicode_InternFromString("numel");
  static PyObject* name_dtype = PyUnicode_InternFromString("dtype");
  static PyObject* name_is_cuda = PyUnicode_InternFromString("is_cuda");
  static PyObject* name_get_device = PyUnicode_InternFromString("get_device");
  PyObject* attr_name = attr.is_none() ? nullptr : attr.ptr();
  i64 missing = 0;
  for (py::ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(objects.ptr(), i);
    py::object tensor = attr_name ? py::reinterpret_steal<py::object>(PyObject_GetAttr(item, attr_name))
                                  : py::reinterpret_borrow<py::object>(item);
    if (!tensor) throw py::error_already_set();
    if (tensor.is_none()) {
      p(i) = e(i) = 0;
      d(i) = dev(i) = -1;
      ++missing;
      continue;
    }
    auto call = [&](PyObject* name) {
      py::object result = py::reinterpret_steal<py::object>(PyObject_CallMethodNoArgs(tensor.ptr(), name));
      if (!result) throw py::error_already_set();
      return result;
    };
    auto get = [&](PyObject* name) {
      py::object result = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), name));
      if (!result) throw py::error_already_set();
      return result;
    };
    p(i) = PyLong_AsLongLong(call(name_data_ptr).ptr());
    e(i) = PyLong_AsLongLong(call(name_numel).ptr());
    PyObject* code = PyDict_GetItem(codes.ptr(), get(name_dtype).ptr());  // borrowed
    d(i) = code ? static_cast<int>(PyLong_AsLong(code)) : -1;
    dev(i) = get(name_is_cuda).ptr() == Py_True ? static_cast<int>(PyLong_AsLong(call(name_get_device).ptr())) : -1;
  }
  return missing;
}

}  // namespace gp::bind
