// RunStore (store.h): Gloo's FileStore or RedisStore, locked, under towerline/<run id>.
#include "store.h"

#include <filesystem>
#include <functional>
#include <thread>

#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#ifdef TL_HAVE_REDIS_STORE
#include <gloo/rendezvous/redis_store.h>
#endif

#include "../check.h"
#include "gloo_error.h"

namespace tl {
namespace group {

namespace {

using GlooStore = gloo::rendezvous::Store;
using CheckFn = std::function<bool(const std::vector<std::string>&)>;

// FileStore keeps `check` protected; RedisStore has it public.
struct FileKeys : gloo::rendezvous::FileStore {
  using FileStore::FileStore;
  using FileStore::check;
};

#ifdef TL_HAVE_REDIS_STORE
// Gloo's RedisStore waits for a reply forever; a bound on every command keeps a hung server from hanging a
// rendezvous, a failure diagnosis or close() (the command fails instead, with hiredis's error).
struct RedisKeys : gloo::rendezvous::RedisStore {
  RedisKeys(const std::string& host, int port, int64_t commandTimeoutMs) : RedisStore(host, port) {
    timeval tv{static_cast<time_t>(commandTimeoutMs / 1000), static_cast<suseconds_t>((commandTimeoutMs % 1000) * 1000)};
    TL_CHECK(redisSetTimeout(redis_, tv) == REDIS_OK, "cannot set a command timeout on the Redis connection");
  }
};
constexpr int64_t kRedisCommandTimeoutMs = 5000;
#endif

// Gloo's stores are not thread-safe (RedisStore has one connection): every call goes through one mutex, and a wait
// polls `check` taking the lock per poll, so a waiting thread never blocks the others.
class LockedStore final : public GlooStore {
 public:
  LockedStore(std::unique_ptr<GlooStore> s, CheckFn check) : store_(std::move(s)), check_(std::move(check)) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    std::lock_guard<std::mutex> lk(mu_);
    store_->set(key, data);
  }
  std::vector<char> get(const std::string& key) override {
    wait({key}, std::chrono::milliseconds(30000));
    std::lock_guard<std::mutex> lk(mu_);
    return store_->get(key);
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, kDefaultTimeout); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    const auto deadline = Clock::now() + timeout;
    while (!check(keys)) {
      TL_CHECK(Clock::now() < deadline, "timed out after " << timeout.count() << " ms waiting for store key(s) "
                                                           << gloo::MakeString(keys));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  bool check(const std::vector<std::string>& keys) {
    std::lock_guard<std::mutex> lk(mu_);
    return check_(keys);
  }

 private:
  std::mutex mu_;
  std::unique_ptr<GlooStore> store_;
  CheckFn check_;
};

std::unique_ptr<LockedStore> openFile(const std::string& url) {
  const std::string path = url.substr(7);
  TL_CHECK_ARG(!path.empty() && path[0] == '/', Range,
               "rendezvous " << url << ": a file store needs an absolute directory, like file:///shared/towerline");
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  TL_CHECK(!ec, "rendezvous " << url << ": cannot create the directory " << path << ": " << ec.message());
  auto* fs = new FileKeys(path);
  return std::make_unique<LockedStore>(std::unique_ptr<GlooStore>(fs), [fs](const std::vector<std::string>& k) { return fs->check(k); });
}

std::unique_ptr<LockedStore> openRedis(const std::string& url) {
#ifdef TL_HAVE_REDIS_STORE
  std::string rest = url.substr(8), host = rest;
  int port = 6379;
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    host = rest.substr(0, colon);
    const std::string p = rest.substr(colon + 1);
    TL_CHECK_ARG(!p.empty() && p.find_first_not_of("0123456789") == std::string::npos && std::stoi(p) > 0 && std::stoi(p) < 65536,
                 Range, "rendezvous " << url << ": the port must be an integer in [1, 65535], got '" << p << "'");
    port = std::stoi(p);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  TL_CHECK_ARG(!host.empty(), Range, "rendezvous " << url << ": expected redis://host:port");
  try {
    auto* rs = new RedisKeys(host, port, kRedisCommandTimeoutMs);
    return std::make_unique<LockedStore>(std::unique_ptr<GlooStore>(rs), [rs](const std::vector<std::string>& k) { return rs->check(k); });
  } catch (const std::exception& e) {
    TL_FAIL("cannot reach the rendezvous store " << url << ": " << glooMessage(e) << " (is redis-server running there?)");
  }
#else
  TL_FAIL("rendezvous " << url << ": this addon was built without hiredis, so redis:// stores are unavailable; install "
                        << "libhiredis-dev and rebuild (npm run build:native), or use a file:///shared/dir store");
#endif
}

}  // namespace

struct RunStore::Impl {
  std::unique_ptr<LockedStore> locked;
  std::unique_ptr<gloo::rendezvous::PrefixStore> run;
  std::string prefix;
};

RunStore::RunStore(std::string url, std::unique_ptr<Impl> impl) : url_(std::move(url)), impl_(std::move(impl)) {}
RunStore::~RunStore() = default;

std::unique_ptr<RunStore> RunStore::open(const std::string& url, const std::string& runId) {
  auto impl = std::make_unique<Impl>();
  if (url.rfind("file://", 0) == 0)
    impl->locked = openFile(url);
  else if (url.rfind("redis://", 0) == 0)
    impl->locked = openRedis(url);
  else
    TL_CHECK_ARG(false, Range, "rendezvous must be file:///shared/dir or redis://host:port, got '" << url << "'");
  impl->prefix = "towerline/" + runId;
  impl->run = std::make_unique<gloo::rendezvous::PrefixStore>(impl->prefix, *impl->locked);
  return std::unique_ptr<RunStore>(new RunStore(url, std::move(impl)));
}

void RunStore::set(const std::string& key, const std::string& value) {
  try {
    impl_->run->set(key, std::vector<char>(value.begin(), value.end()));
  } catch (const std::exception& e) {
    TL_FAIL("rendezvous store " << url_ << ": cannot write '" << key << "': " << glooMessage(e));
  }
}

std::string RunStore::get(const std::string& key) {
  try {
    std::vector<char> v = impl_->run->get(key);
    return std::string(v.begin(), v.end());
  } catch (const std::exception& e) {
    TL_FAIL("rendezvous store " << url_ << ": cannot read '" << key << "': " << glooMessage(e));
  }
}

// Gloo's PrefixStore joins "<prefix>/<key>"; has() checks that key in the locked store underneath.
bool RunStore::has(const std::string& key) {
  try {
    return impl_->locked->check({impl_->prefix + "/" + key});
  } catch (const std::exception& e) {
    TL_FAIL("rendezvous store " << url_ << ": cannot look up '" << key << "': " << glooMessage(e));
  }
}

std::vector<size_t> RunStore::waitAll(const std::vector<std::string>& keys, Clock::time_point deadline) {
  std::vector<size_t> missing(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) missing[i] = i;
  for (;;) {
    std::vector<size_t> still;
    for (size_t i : missing)
      if (!has(keys[i])) still.push_back(i);
    missing = std::move(still);
    if (missing.empty() || Clock::now() >= deadline) return missing;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::unique_ptr<gloo::rendezvous::Store> RunStore::scoped(const std::string& sub) {
  return std::make_unique<gloo::rendezvous::PrefixStore>(sub, *impl_->run);
}

}  // namespace group
}  // namespace tl
