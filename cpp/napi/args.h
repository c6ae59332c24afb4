// Argument helpers of the N-API bindings: reading handles, dtypes and typed arrays, and turning native errors
// into JS errors (Note [Native errors] in cpp/check.h).
#pragma once
#include <napi.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>

#include "../tensor.h"

namespace tl {
namespace napi {

// The JS error for a native exception: tl::Error keeps its message, its file:line (`nativeLocation`) and its kind
// (Error, TypeError, RangeError); every native error has code 'TL_NATIVE'.
Napi::Error toJsError(Napi::Env env, const std::exception_ptr& ep);

// Runs `body`, converting native exceptions into thrown JS errors (JS errors pass through).
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw toJsError(env, std::current_exception());
  }
}

// Argument i as a non-negative integer handle (device id, buffer, program, communicator, rank).
uint32_t u32Arg(const Napi::CallbackInfo& info, size_t i, const char* what);
// For exports whose first argument is a handle: f(handle), native errors turned into JS ones; f's value, or
// undefined when f returns nothing.
template <typename F>
Napi::Value withHandle(const Napi::CallbackInfo& info, const char* what, F&& f) {
  const uint32_t h = u32Arg(info, 0, what);
  if constexpr (std::is_void_v<decltype(f(h))>) {
    guarded(info.Env(), [&] { f(h); });
    return info.Env().Undefined();
  } else {
    return guarded(info.Env(), [&]() -> Napi::Value { return f(h); });
  }
}

// 'f32' | 'i32' | 'u8'.
DType dtypeArg(Napi::Env env, const Napi::Value& v);
// The typed-array type holding a dtype, and the name of its JS class ("Float32Array").
napi_typedarray_type arrayTypeFor(DType t);
const char* arrayNameFor(DType t);
// The data of a typed array (SharedArrayBuffer-backed ones too).
const uint8_t* typedArrayData(Napi::Env env, const Napi::TypedArray& arr);
// A JS object built field by field: ObjectOf(env).set("a", 1).set("b", "x").
class ObjectOf {
 public:
  explicit ObjectOf(Napi::Env env) : o_(Napi::Object::New(env)) {}
  template <typename T>
  ObjectOf& set(const char* key, const T& value) {
    o_.Set(key, value);
    return *this;
  }
  operator Napi::Object() const { return o_; }
  operator Napi::Value() const { return o_; }

 private:
  Napi::Object o_;
};

// o[key] as a number or a string, absent when undefined/not of that type.
std::optional<double> numberField(const Napi::Object& o, const char* key);
std::optional<std::string> stringField(const Napi::Object& o, const char* key);

}  // namespace napi
}  // namespace tl
