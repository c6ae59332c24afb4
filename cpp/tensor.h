// Tensors as the kernels see them: a typed pointer into one device's memory plus its element count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tl {

enum class DType : int32_t { F32 = 0, I32 = 1, U8 = 2 };

inline size_t dtypeSize(DType t) { return t == DType::U8 ? 1 : 4; }
inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

// A view of one buffer passed to a kernel. `data` is device memory of the backend running the kernel.
struct TensorRef {
  void* data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
  uint32_t handle = 0;  // the JS-visible handle, for error messages
  float* f32() const { return static_cast<float*>(data); }
  int32_t* i32() const { return static_cast<int32_t*>(data); }
  uint8_t* u8() const { return static_cast<uint8_t*>(data); }
};

}  // namespace tl
