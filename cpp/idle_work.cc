// Put-off completions and the reaper that bounds how long they wait (Note [Wake-ups in idle time] in idle_work.h).
#include "idle_work.h"

#include <chrono>
#include <condition_variable>
#include <thread>
#include <vector>

namespace tl {

namespace {

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

thread_local std::shared_ptr<IdleWork> current;

// The process's reaper: every kLateMs while any device has work put off, it runs what has waited longer than that.
// Started with the first device that puts work off; it sleeps on a condition variable when nothing is put off.
class Reaper {
 public:
  static Reaper& get() {
    static Reaper* r = new Reaper();  // never destroyed: device threads may outlive static destructors
    return *r;
  }
  void watch(std::weak_ptr<IdleWork> w) {
    std::lock_guard<std::mutex> lk(mu_);
    watched_.push_back(std::move(w));
    if (!started_) {
      started_ = true;
      std::thread([this] { loop(); }).detach();
    }
  }
  // A device put work off: make sure the reaper looks (a wake-up only when it slept with nothing put off).
  void poke() {
    if (!asleep_.load(std::memory_order_seq_cst)) return;  // after defer's count_ add: Dekker with loop()
    std::lock_guard<std::mutex> lk(mu_);
    asleep_.store(false, std::memory_order_release);
    cv_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait_for(lk, std::chrono::milliseconds(IdleWork::kLateMs));
      std::vector<std::shared_ptr<IdleWork>> live;
      for (auto it = watched_.begin(); it != watched_.end();) {
        if (auto w = it->lock()) {
          live.push_back(std::move(w));
          ++it;
        } else {
          it = watched_.erase(it);
        }
      }
      lk.unlock();
      bool any = false;
      const int64_t late = nowNs() - IdleWork::kLateMs * 1'000'000;
      for (auto& w : live) {
        if (!w->pending()) continue;
        w->run(late);
        any = any || w->pending();
      }
      live.clear();  // the last reference to a device's IdleWork may go here: not under mu_
      lk.lock();
      if (!any) {  // nothing put off: sleep until a device puts work off (poke), then look again after kLateMs
        asleep_.store(true, std::memory_order_seq_cst);
        if (anyPending()) asleep_.store(false, std::memory_order_relaxed);
        else cv_.wait(lk, [&] { return !asleep_.load(std::memory_order_acquire); });
      }
    }
  }
  // Under mu_: whether any watched device has work put off (checked after announcing sleep: no poke is lost).
  bool anyPending() {
    for (auto& w : watched_)
      if (auto s = w.lock(); s && s->pending()) return true;
    return false;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::weak_ptr<IdleWork>> watched_;
  bool started_ = false;
  std::atomic<bool> asleep_{false};
};

}  // namespace

void IdleWork::defer(std::function<void()> f) {
  count_.fetch_add(1, std::memory_order_seq_cst);
  {
    std::lock_guard<std::mutex> lk(listMu_);
    items_.emplace_back(nowNs(), std::move(f));
  }
  if (!registered_.exchange(true)) Reaper::get().watch(weak_from_this());
  Reaper::get().poke();
}

void IdleWork::run(int64_t olderThanNs) {
  auto keep = shared_from_this();  // what ran may hold the last reference to the device (and to this)
  // What ran is let go after runMu_: the last reference to a device may go with it, and ~Device joins the device
  // thread, which may be waiting for runMu_ to run its own put-off work.
  std::vector<std::function<void()>> ran;  // declared before the lock: destroyed after it is released
  std::lock_guard<std::mutex> order(runMu_);
  for (;;) {
    std::function<void()> f;
    {
      std::lock_guard<std::mutex> lk(listMu_);
      if (items_.empty() || items_.front().first > olderThanNs) break;
      f = std::move(items_.front().second);
      items_.pop_front();
    }
    f();
    ran.push_back(std::move(f));
    count_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void IdleWork::bindThread(std::shared_ptr<IdleWork> w) { current = std::move(w); }

bool IdleWork::pendingHere() { return current && current->pending(); }

void IdleWork::runHere() {
  if (current && current->pending()) current->run();
}

}  // namespace tl
