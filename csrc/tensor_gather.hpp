// Reads the raw table of many torch tensors in one call, through the CPython API: no per-tensor
// Python work on the training thread. Knows nothing of libtorch: it calls the tensors' own
// methods (data_ptr, numel, dtype, stride, ...), exactly what Python code would.
//
// Each row also gets a layout key (dtype, shape, strides) and a status saying
// whether the kernels may read `numel` elements from the pointer: only when the elements are dense
// and non-overlapping (some permutation of a contiguous layout, so the pointer is the lowest
// address) and inside the tensor's storage. The storage check costs two more calls, so it is done
// only when a row's pointer or key changed since the previous call on the same output arrays.
// Debug builds (and sanitizer builds, see CMakeLists.txt) assert natively that every row read in
// place lies inside its storage, each call, cached verdicts included.
#pragma once
#if !defined(NDEBUG) && !defined(GRADPROBE_BOUNDS_CHECKS)
#define GRADPROBE_BOUNDS_CHECKS 1
#endif

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../kernels/stats_math.hpp"
#include "tensor_layout.hpp"

namespace gp::bind {

namespace py = pybind11;

using namespace gp::layout;

// Installed by gradprobe.torch_bridge when a libtorch reader built against the running torch exists.
inline FastGather& fast_gather() {
  static FastGather reader = nullptr;
  return reader;
}

// The attribute as the fast reader knows it (the object, or its .grad), or -1 for other paths.
inline int fast_attr(const py::object& attr) {
  if (attr.is_none()) return kAttrSelf;
  if (py::isinstance<py::str>(attr) && attr.cast<std::string>() == "grad") return kAttrGrad;
  return -1;
}

// For each object (or its attribute `attr`, e.g. "grad", or a path of attributes as a tuple, e.g.
// ("grad", "_local_tensor") for an FSDP shard; None anywhere on the path means missing): data pointer (0 when None), element
// count, dtype code (from `codes`, keyed by dtype object; -1 when unsupported), device (-1 for CPU,
// else the CUDA index), layout key (dtype, shape, strides) and status (above). Rows whose pointer and key are those already
// in the arrays keep their status. Returns how many were None.
// The same into raw arrays of len(objects) entries each (rows.versions is not filled), through the
// libtorch reader when installed and `attr` is None or "grad", else through the CPython API.
inline i64 gather_rows(py::list objects, py::object attr, py::dict codes, const GatherRows& rows) {
  const py::ssize_t n = static_cast<py::ssize_t>(py::len(objects));
  if (FastGather reader = fast_gather(); reader != nullptr && fast_attr(attr) >= 0) {
    GatherRows fast = rows;
    fast.versions = nullptr;
    i64 missing = 0;
    const int done = reader(objects.ptr(), fast_attr(attr), &fast, 0, &missing);
    if (done < 0) throw py::error_already_set();
    if (done == 1) return missing;
  }
  auto p = [&](py::ssize_t i) -> i64& { return rows.ptrs[i]; };
  auto e = [&](py::ssize_t i) -> i64& { return rows.numels[i]; };
  auto d = [&](py::ssize_t i) -> int& { return rows.dtypes[i]; };
  auto dev = [&](py::ssize_t i) -> int& { return rows.devices[i]; };
  auto k = [&](py::ssize_t i) -> i64& { return rows.keys[i]; };
  auto st = [&](py::ssize_t i) -> int& { return rows.status[i]; };
  // Raw C API with interned names: pybind's attr()/cast() wrappers cost more than the calls.
  static PyObject* name_data_ptr = PyUnicode_InternFromString("data_ptr");
  static PyObject* name_numel = PyUnicode_InternFromString("numel");
  static PyObject* name_dtype = PyUnicode_InternFromString("dtype");
  static PyObject* name_is_cuda = PyUnicode_InternFromString("is_cuda");
  static PyObject* name_get_device = PyUnicode_InternFromString("get_device");
  static PyObject* name_shape = PyUnicode_InternFromString("shape");
  static PyObject* name_stride = PyUnicode_InternFromString("stride");
  static PyObject* name_storage_offset = PyUnicode_InternFromString("storage_offset");
  static PyObject* name_is_sparse = PyUnicode_InternFromString("is_sparse");
  static PyObject* name_untyped_storage = PyUnicode_InternFromString("untyped_storage");
  static PyObject* name_nbytes = PyUnicode_InternFromString("nbytes");
  std::vector<PyObject*> path;  // borrowed from `attr`, which outlives the loop
  if (py::isinstance<py::tuple>(attr)) {
    for (py::handle name : attr) path.push_back(name.ptr());
  } else if (!attr.is_none()) {
    path.push_back(attr.ptr());
  }
  std::vector<std::pair<i64, i64>> dims;
  i64 missing = 0;
  for (py::ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(objects.ptr(), i);
    py::object tensor = py::reinterpret_borrow<py::object>(item);
    for (PyObject* name : path) {
      if (tensor.is_none()) break;
      tensor = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), name));
      if (!tensor) throw py::error_already_set();
    }
    if (tensor.is_none()) {
      p(i) = e(i) = k(i) = 0;
      d(i) = dev(i) = st(i) = kGatherMissing;
      ++missing;
      continue;
    }
    auto call = [&](PyObject* obj, PyObject* name) {
      py::object result = py::reinterpret_steal<py::object>(PyObject_CallMethodNoArgs(obj, name));
      if (!result) throw py::error_already_set();
      return result;
    };
    auto get = [&](PyObject* name) {
      py::object result = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), name));
      if (!result) throw py::error_already_set();
      return result;
    };
    const i64 old_ptr = p(i), old_key = k(i);
    const int old_status = st(i);
    PyObject* code = PyDict_GetItem(codes.ptr(), get(name_dtype).ptr());  // borrowed
    d(i) = code ? static_cast<int>(PyLong_AsLong(code)) : -1;
    dev(i) = get(name_is_cuda).ptr() == Py_True ? static_cast<int>(PyLong_AsLong(call(tensor.ptr(), name_get_device).ptr())) : -1;
    e(i) = PyLong_AsLongLong(call(tensor.ptr(), name_numel).ptr());
    // Sparse tensors have no strided data (their data_ptr raises, their strides are fake).
    if (d(i) < 0 || get(name_is_sparse).ptr() == Py_True) {
      p(i) = k(i) = 0;
      st(i) = kGatherUnsupported;
      continue;
    }
    PyObject* raw_ptr = PyObject_CallMethodNoArgs(tensor.ptr(), name_data_ptr);
    if (!raw_ptr) {  // no storage (e.g. a tensor subclass without data): not readable
      PyErr_Clear();
      p(i) = k(i) = 0;
      st(i) = kGatherUnsupported;
      continue;
    }
    p(i) = PyLong_AsLongLong(raw_ptr);
    Py_DECREF(raw_ptr);
    py::object shape = get(name_shape);
    py::object strides = call(tensor.ptr(), name_stride);
    const py::ssize_t ndim = PyTuple_GET_SIZE(strides.ptr());
    if (PyTuple_GET_SIZE(shape.ptr()) != ndim) throw py::value_error("gather: shape and strides differ in length");
    dims.clear();
    for (py::ssize_t j = 0; j < ndim; ++j) {
      const i64 size = PyLong_AsLongLong(PyTuple_GET_ITEM(shape.ptr(), j));
      const i64 stride = PyLong_AsLongLong(PyTuple_GET_ITEM(strides.ptr(), j));
      dims.emplace_back(stride, size);
    }
    k(i) = layout_key(d(i), dims);
    if (p(i) == old_ptr && k(i) == old_key && old_status >= kGatherInPlace) {
      st(i) = old_status;  // same pointer, same layout: validated before
#ifdef GRADPROBE_BOUNDS_CHECKS
      if (st(i) == kGatherInPlace && e(i) > 0) {  // the cached verdict must still hold
        py::object storage = call(tensor.ptr(), name_untyped_storage);
        const i64 base = PyLong_AsLongLong(call(storage.ptr(), name_data_ptr).ptr());
        const i64 nbytes = PyLong_AsLongLong(call(storage.ptr(), name_nbytes).ptr());
        if (p(i) < base || p(i) + e(i) * dtype_bytes(d(i)) > base + nbytes)
          throw std::logic_error("gather: row " + std::to_string(i) + " would read outside its storage");
      }
#endif
      continue;
    }
    if (e(i) == 0) {
      st(i) = kGatherInPlace;
      continue;
    }
    if (p(i) == 0) {  // meta tensors, freed storage (FSDP's resize_(0))
      st(i) = kGatherUnsupported;
      continue;
    }
    const i64 offset = PyLong_AsLongLong(call(tensor.ptr(), name_storage_offset).ptr());
    py::object storage = call(tensor.ptr(), name_untyped_storage);
    const i64 nbytes = PyLong_AsLongLong(call(storage.ptr(), name_nbytes).ptr());
    const i64 item_bytes = dtype_bytes(d(i));
    st(i) = read_status(dims, d(i), offset, nbytes);
#ifdef GRADPROBE_BOUNDS_CHECKS
    if (st(i) == kGatherInPlace) {  // what the kernels will read: numel elements from the pointer
      const i64 base = PyLong_AsLongLong(call(storage.ptr(), name_data_ptr).ptr());
      if (p(i) < base || p(i) + e(i) * item_bytes > base + nbytes)
        throw std::logic_error("gather: row " + std::to_string(i) + " would read outside its storage");
    }
#endif
  }
  return missing;
}

inline i64 gather_tensors(py::list objects, py::object attr, py::dict codes, py::array_t<i64> ptrs,
                          py::array_t<i64> numels, py::array_t<int> dtypes, py::array_t<int> devices,
                          py::array_t<i64> keys, py::array_t<int> status) {
  const py::ssize_t n = static_cast<py::ssize_t>(py::len(objects));
  for (py::ssize_t size : {ptrs.size(), numels.size(), dtypes.size(), devices.size(), keys.size(), status.size()})
    if (size != n) throw py::value_error("gather: output arrays must have one entry per object");
  const GatherRows rows{ptrs.mutable_data(), numels.mutable_data(), dtypes.mutable_data(), devices.mutable_data(),
                        keys.mutable_data(), status.mutable_data(), nullptr};
  return gather_rows(objects, attr, codes, rows);
}

// For each object (or its attribute path `attr`, as in gather_tensors): the tensor's version counter
// (`_version`, bumped by every in-place change) and data pointer, or -1 and 0 when it is None. Lets the
// probe tell, at an optimizer step, whether gradients changed since the backward that completed them.
inline void tensor_versions(py::list objects, py::object attr, py::array_t<i64> versions, py::array_t<i64> ptrs) {
  const py::ssize_t n = static_cast<py::ssize_t>(py::len(objects));
  if (versions.size() != n || ptrs.size() != n)
    throw py::value_error("tensor_versions: output arrays must have one entry per object");
  if (FastGather reader = fast_gather(); reader != nullptr && fast_attr(attr) >= 0) {
    GatherRows rows{ptrs.mutable_data(), nullptr, nullptr, nullptr, nullptr, nullptr, versions.mutable_data()};
    i64 missing = 0;
    const int done = reader(objects.ptr(), fast_attr(attr), &rows, 1, &missing);
    if (done < 0) throw py::error_already_set();
    if (done == 1) return;
  }
  auto v = versions.mutable_unchecked<1>();
  auto p = ptrs.mutable_unchecked<1>();
  static PyObject* name_version = PyUnicode_InternFromString("_version");
  static PyObject* name_data_ptr = PyUnicode_InternFromString("data_ptr");
  std::vector<PyObject*> path;
  if (py::isinstance<py::tuple>(attr)) {
    for (py::handle name : attr) path.push_back(name.ptr());
  } else if (!attr.is_none()) {
    path.push_back(attr.ptr());
  }
  for (py::ssize_t i = 0; i < n; ++i) {
    py::object tensor = py::reinterpret_borrow<py::object>(PyList_GET_ITEM(objects.ptr(), i));
    for (PyObject* name : path) {
      if (tensor.is_none()) break;
      tensor = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), name));
      if (!tensor) throw py::error_already_set();
    }
    if (tensor.is_none()) {
      v(i) = -1;
      p(i) = 0;
      continue;
    }
    py::object version = py::reinterpret_steal<py::object>(PyObject_GetAttr(tensor.ptr(), name_version));
    if (!version) throw py::error_already_set();
    v(i) = PyLong_AsLongLong(version.ptr());
    PyObject* raw_ptr = PyObject_CallMethodNoArgs(tensor.ptr(), name_data_ptr);
    if (!raw_ptr) {  // no storage: only the version tells
      PyErr_Clear();
      p(i) = 0;
      continue;
    }
    p(i) = PyLong_AsLongLong(raw_ptr);
    Py_DECREF(raw_ptr);
  }
}

// Installs (or, with None, removes) the libtorch reader: a PyCapsule named
// "gradprobe.torch_bridge.FastGather" holding a FastGather.
inline void install_fast_gather(py::object capsule) {
  if (capsule.is_none()) {
    fast_gather() = nullptr;
    return;
  }
  void* reader = PyCapsule_GetPointer(capsule.ptr(), "gradprobe.torch_bridge.FastGather");
  if (reader == nullptr) throw py::error_already_set();
  fast_gather() = reinterpret_cast<FastGather>(reader);
}

inline void register_gather_constants(py::module_& m) {
  py::dict codes;
  codes["missing"] = static_cast<int>(kGatherMissing);
  codes["in_place"] = static_cast<int>(kGatherInPlace);
  codes["needs_copy"] = static_cast<int>(kGatherNeedsCopy);
  codes["outside"] = static_cast<int>(kGatherOutside);
  codes["unsupported"] = static_cast<int>(kGatherUnsupported);
  m.attr("GATHER_STATUS") = codes;
}

}  // namespace gp::bind
