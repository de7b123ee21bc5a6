// The (tensor, chunk) work table that lets one pass cover any number of tensors.
// Large tensors are split into chunk tasks whose partials are merged afterwards;
// small tensors are packed, several whole tensors to one task, and finalised in place.
// Shared by the CPU twin and the CUDA launcher (which copies the table to the device).
#pragma once

#include "stats_math.hpp"

namespace gp {

// One input: x = a, or x = a - b when b is set (weight updates).
struct TensorDesc {
  u64 a;
  u64 b;
  i64 numel;
  int dtype_a;
  int dtype_b;
  i64 first_task;  // chunk-split tensors: index of their first chunk task (= first partial)
  i64 num_tasks;   // 0 for packed tensors
};

// Chunk task: elements [start, start+len) of tensor_begin, reduced to a partial at the task's index.
// Packed task: whole tensors [tensor_begin, tensor_end), each finalised by the task itself.
struct Task {
  i64 tensor_begin;
  i64 tensor_end;
  i64 start;
  i64 len;  // < 0 marks a packed task
};

GP_HD bool task_is_packed(const Task& t) { return t.len < 0; }

#if !defined(__CUDACC_RTC__)
// Fills tasks (capacity at least plan_max_tasks) and the tensors' task fields; returns the count.
inline i64 plan_max_tasks(const TensorDesc* tensors, i64 n, i64 chunk) {
  i64 count = 0;
  for (i64 i = 0; i < n; ++i) count += tensors[i].numel > chunk ? (tensors[i].numel + chunk - 1) / chunk : 1;
  return count;
}

inline i64 plan_tasks(TensorDesc* tensors, i64 n, i64 chunk, Task* tasks) {
  i64 count = 0;
  i64 i = 0;
  while (i < n) {
    if (tensors[i].numel > chunk) {
      tensors[i].first_task = count;
      tensors[i].num_tasks = (tensors[i].numel + chunk - 1) / chunk;
      for (i64 c = 0; c < tensors[i].num_tasks; ++c) {
        i64 start = c * chunk;
        i64 rest = tensors[i].numel - start;
        tasks[count++] = Task{i, i + 1, start, rest < chunk ? rest : chunk};
      }
      ++i;
      continue;
    }
    // Pack consecutive small tensors until the task holds about one chunk of elements.
    i64 begin = i, elements = 0;
    while (i < n && tensors[i].numel <= chunk && (i == begin || elements + tensors[i].numel <= chunk)) {
      tensors[i].first_task = count;
      tensors[i].num_tasks = 0;
      elements += tensors[i].numel;
      ++i;
    }
    tasks[count++] = Task{begin, i, 0, -1};
  }
  return count;
}
#endif

}  // namespace gp
