// The named slots of a tower's hyper-parameter buffer (f32), shared by every backend and by TypeScript.
#pragma once
#include <cstdint>

namespace tl {

// Note [Hyper-parameter slots]: each tower owns one small f32 buffer that the coordinator rewrites before every
// step (in the same hand-off as the step's inputs), so a compiled program never changes when the learning rate
// or the step does. Kernels read it by these names only; src/native/hyper.ts mirrors them and a test checks the
// two against native().contract().hyper.
enum HyperSlot : int32_t {
  kHyperLr = 0,         // learning rate of this step (schedule value times any rollback scale)
  kHyperStep = 1,       // the 1-based step t (Adam's bias correction, dropout masks)
  kHyperGradScale = 2,  // the shard weight: 1 / global batch (Note [Shard weighting])
};
constexpr int64_t kHyperUsed = 3;  // slots a kernel that reads the buffer requires
constexpr int64_t kHyperSize = 8;  // slots allocated (room for more without changing the layout)

}  // namespace tl
