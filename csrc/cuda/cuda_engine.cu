// CUDA launcher: the work table goes up in one copy, one kernel covers every tensor, the results
// come down in one copy to pinned memory, and an event marks them ready. No host synchronisation.
#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "../../kernels/stats_kernels.cuh"
#include "cuda_engine.hpp"

namespace gp::cuda {

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("gradprobe CUDA: ") + what + ": " + cudaGetErrorString(err));
}

// Restores the caller's current device on scope exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

size_t align_up(size_t bytes) { return (bytes + 255) & ~size_t{255}; }

}  // namespace

// Host staging layout: [tensors | tasks]; result layout: [out (n x fields) | hist (n x bins)].
struct Slot {
  i64 tensor_capacity = 0, task_capacity = 0;
  void* host_table = nullptr;   // pinned
  void* host_result = nullptr;  // pinned
  void* device_table = nullptr;
  void* device_result = nullptr;
  double* device_partials = nullptr;
  u32* device_partial_hist = nullptr;
  u32* device_counters = nullptr;
  cudaEvent_t done = nullptr;
  bool held = false;
  bool launched = false;
  i64 n = 0;
  bool hist = false;

  static size_t table_bytes(i64 tensors, i64 tasks) {
    return align_up(sizeof(TensorDesc) * tensors) + sizeof(Task) * tasks;
  }
  static size_t result_bytes(i64 tensors) {
    return align_up(sizeof(double) * kNumFields * tensors) + sizeof(u64) * kHistBins * tensors;
  }

  void free_buffers() {
    if (host_table) cudaFreeHost(host_table);
    if (host_result) cudaFreeHost(host_result);
    if (device_table) cudaFree(device_table);
    if (device_result) cudaFree(device_result);
    if (device_partials) cudaFree(device_partials);
    if (device_partial_hist) cudaFree(device_partial_hist);
    if (device_counters) cudaFree(device_counters);
    host_table = host_result = device_table = device_result = nullptr;
    device_partials = nullptr;
    device_partial_hist = device_counters = nullptr;
  }

  // Grows to fit; allocation (and cudaFree's implicit sync) happens only when a call is the largest yet.
  void reserve(i64 tensors, i64 tasks) {
    if (tensors <= tensor_capacity && tasks <= task_capacity) return;
    if (launched) check(cudaEventSynchronize(done), "cudaEventSynchronize");
    free_buffers();
    tensor_capacity = std::max<i64>(tensors, tensor_capacity * 2);
    task_capacity = std::max<i64>(tasks, task_capacity * 2);
    check(cudaMallocHost(&host_table, table_bytes(tensor_capacity, task_capacity)), "cudaMallocHost");
    check(cudaMallocHost(&host_result, result_bytes(tensor_capacity)), "cudaMallocHost");
    check(cudaMalloc(&device_table, table_bytes(tensor_capacity, task_capacity)), "cudaMalloc");
    check(cudaMalloc(&device_result, result_bytes(tensor_capacity)), "cudaMalloc");
    check(cudaMalloc(reinterpret_cast<void**>(&device_partials), sizeof(double) * kPartialDoubles * task_capacity),
          "cudaMalloc");
    check(cudaMalloc(reinterpret_cast<void**>(&device_partial_hist), sizeof(u32) * kHistBins * task_capacity),
          "cudaMalloc");
    check(cudaMalloc(reinterpret_cast<void**>(&device_counters), sizeof(u32) * tensor_capacity), "cudaMalloc");
    check(cudaMemset(device_counters, 0, sizeof(u32) * tensor_capacity), "cudaMemset");
  }
};

Status status() {
  Status s{false, 0, 0, 0, ""};
  cudaRuntimeGetVersion(&s.runtime_version);
  cudaDriverGetVersion(&s.driver_version);
  cudaError_t err = cudaGetDeviceCount(&s.device_count);
  if (err != cudaSuccess) {
    s.device_count = 0;
    s.reason = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    if (s.driver_version == 0) s.reason = "no CUDA driver found (" + s.reason + ")";
    cudaGetLastError();  // clear the sticky error so later calls report their own
    return s;
  }
  if (s.device_count == 0) {
    s.reason = "no CUDA device present";
    return s;
  }
  if (s.driver_version < s.runtime_version) {
    s.reason = "CUDA driver " + std::to_string(s.driver_version) + " is older than the runtime " +
               std::to_string(s.runtime_version) + " gradprobe was built with";
    return s;
  }
  s.usable = true;
  return s;
}

Engine::Engine(int device, int max_slots) : device_(device), max_slots_(std::max(1, max_slots)) {
  DeviceGuard guard(device_);
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_), "cudaDeviceGetAttribute");
  grid_limit_ = std::max(1, sms) * 8;
}

Engine::~Engine() {
  try {
    DeviceGuard guard(device_);
    for (auto& slot : slots_) {
      if (slot->launched) cudaEventSynchronize(slot->done);
      if (slot->done) cudaEventDestroy(slot->done);
      slot->free_buffers();
    }
  } catch (...) {
    // Teardown at interpreter exit may find the driver gone; nothing to report to.
  }
}

int Engine::launch(const std::vector<TensorDesc>& input, std::uintptr_t stream_handle, bool want_hist) {
  DeviceGuard guard(device_);
  int index = -1;
  for (size_t i = 0; i < slots_.size(); ++i) {
    // A slot released unread may still be in flight on another stream: skip it rather than wait.
    if (!slots_[i]->held && (!slots_[i]->launched || cudaEventQuery(slots_[i]->done) == cudaSuccess)) {
      index = static_cast<int>(i);
      break;
    }
  }
  cudaGetLastError();  // a not-ready query leaves no error worth keeping
  if (index < 0 && static_cast<int>(slots_.size()) >= max_slots_) return -1;  // the ring is full
  if (index < 0) {
    auto slot = std::make_unique<Slot>();
    check(cudaEventCreateWithFlags(&slot->done, cudaEventDisableTiming), "cudaEventCreate");
    slots_.push_back(std::move(slot));
    index = static_cast<int>(slots_.size()) - 1;
  }
  Slot& slot = *slots_[index];
  const i64 n = static_cast<i64>(input.size());
  const i64 max_tasks = plan_max_tasks(input.data(), n, kChunk);
  slot.reserve(std::max<i64>(n, 1), std::max<i64>(max_tasks, 1));

  // The chosen slot's previous copies have completed, so its staging memory is free.
  auto* host_tensors = static_cast<TensorDesc*>(slot.host_table);
  auto* host_tasks = reinterpret_cast<Task*>(static_cast<char*>(slot.host_table) + align_up(sizeof(TensorDesc) * slot.tensor_capacity));
  std::memcpy(host_tensors, input.data(), sizeof(TensorDesc) * n);
  const i64 num_tasks = plan_tasks(host_tensors, n, kChunk, host_tasks);

  auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const size_t tensor_block = align_up(sizeof(TensorDesc) * slot.tensor_capacity);
  char* device_table = static_cast<char*>(slot.device_table);
  // The table is contiguous in both places: one copy carries tensors and tasks.
  check(cudaMemcpyAsync(device_table, slot.host_table, tensor_block + sizeof(Task) * num_tasks,
                        cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync (table)");
  auto* device_out = static_cast<double*>(slot.device_result);
  const size_t out_block = align_up(sizeof(double) * kNumFields * slot.tensor_capacity);
  auto* device_hist = reinterpret_cast<u64*>(static_cast<char*>(slot.device_result) + out_block);
  if (num_tasks > 0) {
    const int grid = static_cast<int>(std::min<i64>(num_tasks, grid_limit_));
    gp_stats_kernel<<<grid, kBlockThreads, 0, stream>>>(
        reinterpret_cast<const TensorDesc*>(device_table), reinterpret_cast<const Task*>(device_table + tensor_block),
        num_tasks, slot.device_partials, slot.device_partial_hist, slot.device_counters, device_out, device_hist,
        want_hist ? 1 : 0);
    check(cudaGetLastError(), "kernel launch");
  }
  // Results land in the same layout on the host: one copy when the histogram is kept, else only the rows.
  const size_t result_copy = want_hist ? out_block + sizeof(u64) * kHistBins * slot.tensor_capacity
                                       : sizeof(double) * kNumFields * n;
  check(cudaMemcpyAsync(slot.host_result, slot.device_result, result_copy, cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (results)");
  check(cudaEventRecord(slot.done, stream), "cudaEventRecord");
  slot.held = true;
  slot.launched = true;
  slot.n = n;
  slot.hist = want_hist;
  ++launches_;
  return index;
}

bool Engine::ready(int index) const {
  const Slot& slot = *slots_.at(index);
  DeviceGuard guard(device_);
  cudaError_t err = cudaEventQuery(slot.done);
  if (err == cudaErrorNotReady) return false;
  check(err, "cudaEventQuery");
  return true;
}

void Engine::wait(int index) const {
  DeviceGuard guard(device_);
  check(cudaEventSynchronize(slots_.at(index)->done), "cudaEventSynchronize");
}

void Engine::read(int index, double* out, u64* hist) const {
  const Slot& slot = *slots_.at(index);
  if (!slot.held) throw std::runtime_error("gradprobe CUDA: reading a released result slot");
  wait(index);
  std::memcpy(out, slot.host_result, sizeof(double) * kNumFields * slot.n);
  if (hist && slot.hist) {
    const size_t out_block = align_up(sizeof(double) * kNumFields * slot.tensor_capacity);
    std::memcpy(hist, static_cast<const char*>(slot.host_result) + out_block, sizeof(u64) * kHistBins * slot.n);
  }
}

void Engine::release(int index) { slots_.at(index)->held = false; }

}  // namespace gp::cuda
