// The rendezvous store of one run: Gloo's FileStore (file:///dir) or RedisStore (redis://host:port), every key under
// towerline/<run id> (Gloo's PrefixStore), behind one mutex so the rendezvous and the failure path can share it.
#pragma once
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

namespace tl {
namespace group {

using Clock = std::chrono::steady_clock;

class RunStore {
 public:
  // Opens the store `url` names (a directory is created when missing); throws naming the URL and what is wrong.
  static std::unique_ptr<RunStore> open(const std::string& url, const std::string& runId);
  ~RunStore();
  const std::string& url() const { return url_; }
  // Keys are written once (FileStore and RedisStore refuse to overwrite one).
  void set(const std::string& key, const std::string& value);
  std::string get(const std::string& key);  // the key must exist
  bool has(const std::string& key);
  // Polls until every key exists or `deadline` passes; returns the indexes of the keys still missing.
  std::vector<size_t> waitAll(const std::vector<std::string>& keys, Clock::time_point deadline);
  // A Gloo store under the run's prefix plus `sub`, for connectFullMesh; valid while this RunStore lives.
  std::unique_ptr<gloo::rendezvous::Store> scoped(const std::string& sub);

 private:
  struct Impl;
  RunStore(std::string url, std::unique_ptr<Impl> impl);
  std::string url_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace group
}  // namespace tl
