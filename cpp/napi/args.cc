// Argument helpers and the native-to-JS error conversion (args.h).
#include "args.h"

#include "../check.h"

namespace tl {
namespace napi {

Napi::Error toJsError(Napi::Env env, const std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const tl::Error& e) {
    Napi::Error err = e.kind == ErrorKind::Type    ? Napi::TypeError::New(env, e.what())
                      : e.kind == ErrorKind::Range ? Napi::RangeError::New(env, e.what())
                                                   : Napi::Error::New(env, e.what());
    err.Set("nativeLocation", Napi::String::New(env, e.where));
    err.Set("code", Napi::String::New(env, "TL_NATIVE"));
    return err;
  } catch (const std::exception& e) {
    auto err = Napi::Error::New(env, std::string("native error: ") + e.what());
    err.Set("code", Napi::String::New(env, "TL_NATIVE"));
    return err;
  } catch (...) {
    return Napi::Error::New(env, "native error of unknown type");
  }
}

uint32_t u32Arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string("expected ") + what + " (a number) as argument " + std::to_string(i + 1));
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 4294967295.0) || v != static_cast<double>(static_cast<uint32_t>(v)))
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a non-negative integer handle, got " + std::to_string(v));
  return static_cast<uint32_t>(v);
}

DType dtypeArg(Napi::Env env, const Napi::Value& v) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "f32") return DType::F32;
  if (s == "i32") return DType::I32;
  if (s == "u8") return DType::U8;
  throw Napi::TypeError::New(env, "dtype must be 'f32', 'i32' or 'u8', got " + (v.IsString() ? "'" + s + "'" : std::string("a non-string")));
}

napi_typedarray_type arrayTypeFor(DType t) {
  switch (t) {
    case DType::F32: return napi_float32_array;
    case DType::I32: return napi_int32_array;
    default: return napi_uint8_array;
  }
}

const char* arrayNameFor(DType t) {
  switch (t) {
    case DType::F32: return "Float32Array";
    case DType::I32: return "Int32Array";
    default: return "Uint8Array";
  }
}

const uint8_t* typedArrayData(Napi::Env env, const Napi::TypedArray& arr) {
  void* raw = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, arr, nullptr, nullptr, &raw, nullptr, nullptr), nullptr);
  return static_cast<const uint8_t*>(raw);
}

std::optional<double> numberField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) return std::nullopt;
  return v.As<Napi::Number>().DoubleValue();
}

std::optional<std::string> stringField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) return std::nullopt;
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace napi
}  // namespace tl
