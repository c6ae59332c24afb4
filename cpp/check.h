// Check macros: every native failure becomes a tl::Error carrying the message and the file:line that raised it.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace tl {

// Note [Native errors]: kernels and the runtime throw tl::Error; the N-API boundary (napi/args.cc) turns it into a
// JS Error whose message already names the op, the device and the shapes, and whose `nativeLocation` property is
// the file:line of the check. Nothing native ever aborts the process on bad input.
// `kind` picks the JS class at the boundary: a wrong type of argument is a TypeError, a value outside its range a
// RangeError, anything else an Error.
enum class ErrorKind { Error, Type, Range };
struct Error : std::runtime_error {
  std::string where;
  ErrorKind kind;
  Error(const std::string& msg, const char* file, int line, ErrorKind k = ErrorKind::Error)
      : std::runtime_error(msg), where(std::string(file) + ":" + std::to_string(line)), kind(k) {}
};

}  // namespace tl

// TL_CHECK(cond, stream-expression): throws tl::Error with the streamed message when cond is false.
#define TL_CHECK(cond, msg)                                        \
  do {                                                             \
    if (!(cond)) {                                                 \
      std::ostringstream tl_check_os_;                             \
      tl_check_os_ << msg;                                         \
      throw ::tl::Error(tl_check_os_.str(), __FILE__, __LINE__);   \
    }                                                              \
  } while (0)

#define TL_FAIL(msg) TL_CHECK(false, msg)

// TL_CHECK_ARG(cond, kind, msg): as TL_CHECK, for arguments given from JS (kind: Type or Range).
#define TL_CHECK_ARG(cond, errKind, msg)                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::ostringstream tl_check_os_;                                                       \
      tl_check_os_ << msg;                                                                   \
      throw ::tl::Error(tl_check_os_.str(), __FILE__, __LINE__, ::tl::ErrorKind::errKind);   \
    }                                                                                        \
  } while (0)
