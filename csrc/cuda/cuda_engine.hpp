// Host side of the CUDA statistics pass. Plain C++ interface: no CUDA headers, so the pybind11
// binding compiles with the host compiler.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../kernels/work_plan.hpp"

namespace gp::cuda {

struct Status {
  bool usable;
  int device_count;
  int runtime_version;
  int driver_version;
  std::string reason;  // why CUDA cannot be used; empty when usable
};

Status status();

// Elements per chunk task on the GPU.
constexpr i64 kChunk = i64{1} << 17;

struct Slot;

// Result slots an engine keeps at most (each holds pinned host memory and device buffers).
constexpr int kDefaultMaxSlots = 64;

// One engine per device. Each launch takes a result slot: pinned host memory for the table and
// the results, device buffers, and an event. Slots are reused once released; a new one is made
// only while every slot is still held by an unread result, up to max_slots: then launch returns
// -1 and launches nothing (the caller drops that measurement and counts it), so unread results
// never grow pinned memory without limit.
class Engine {
 public:
  explicit Engine(int device, int max_slots = kDefaultMaxSlots);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Enqueues the pass on `stream` (a cudaStream_t as an integer) and returns the slot, or -1 when
  // all max_slots slots hold unread results. Never synchronises the host.
  int launch(const std::vector<TensorDesc>& tensors, std::uintptr_t stream, bool want_hist);
  bool ready(int slot) const;
  void wait(int slot) const;
  // Copies the finished results out of the slot's pinned buffers (waits if needed).
  void read(int slot, double* out, u64* hist) const;
  void release(int slot);
  int device() const { return device_; }
  int num_slots() const { return static_cast<int>(slots_.size()); }
  int max_slots() const { return max_slots_; }
  std::int64_t launches() const { return launches_; }

 private:
  int device_;
  int max_slots_;
  int grid_limit_;
  std::int64_t launches_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace gp::cuda
