// Gloo's exception messages without their "[./gloo/...cc:123] " source prefixes, for errors users read.
#pragma once
#include <exception>
#include <string>

namespace tl {
namespace group {

inline std::string glooMessage(const std::exception& e) {
  std::string m = e.what();
  while (m.size() > 1 && m[0] == '[') {
    const size_t close = m.find("] ");
    if (close == std::string::npos) break;
    m = m.substr(close + 2);
  }
  return m;
}

}  // namespace group
}  // namespace tl
