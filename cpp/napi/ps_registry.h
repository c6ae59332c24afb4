// Handles of the asynchronous mode's native objects (parameter servers, links), each with the environment that created it
// (released with it, like the registry's entries: Note [Process-wide registry]).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <napi.h>

#include "../check.h"

namespace tl {

namespace ps {
class ParameterServer;
struct Pulled;
struct Applied;
}  // namespace ps

namespace napi {

template <typename T>
class HandleTable {
 public:
  explicit HandleTable(const char* what) : what_(what) {}
  void add(uint32_t h, std::shared_ptr<T> v, uint64_t env) {
    std::lock_guard<std::mutex> lk(mu_);
    items_[h] = Entry{std::move(v), env};
  }
  std::shared_ptr<T> get(uint32_t h) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = items_.find(h);
    TL_CHECK_ARG(it != items_.end(), Range, "no " << what_ << " with handle " << h << " (released already?)");
    return it->second.item;
  }
  // The entry, removed; nullptr when unknown (releasing twice is harmless).
  std::shared_ptr<T> remove(uint32_t h) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = items_.find(h);
    if (it == items_.end()) return nullptr;
    auto v = it->second.item;
    items_.erase(it);
    return v;
  }
  std::vector<std::shared_ptr<T>> releaseEnv(uint64_t env) {
    std::vector<std::shared_ptr<T>> out;
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = items_.begin(); it != items_.end();) {
      if (it->second.env == env) {
        out.push_back(it->second.item);
        it = items_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

 private:
  struct Entry {
    std::shared_ptr<T> item;
    uint64_t env;
  };
  const char* what_;
  std::mutex mu_;
  std::map<uint32_t, Entry> items_;
};

// What a pull and a push resolve with (ps.cc).
Napi::Value pulledValue(Napi::Env env, const ps::Pulled& p);
Napi::Value appliedValue(Napi::Env env, const ps::Applied& a);

inline HandleTable<ps::ParameterServer>& psServers() {
  static auto* t = new HandleTable<ps::ParameterServer>("parameter server");  // never destroyed (Registry::get)
  return *t;
}

}  // namespace napi
}  // namespace tl
