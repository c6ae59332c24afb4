// The process-wide registry of devices, buffers and programs: the only state shared by all Node environments.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "idle_work.h"
#include "task_queue.h"

namespace tl {

// Note [Process-wide registry]: every worker_thread loads the addon into its own Node environment, but towers
// must reach each other's buffers for collectives, so devices, buffers and programs live in one registry keyed
// by integer handles, guarded by one mutex. Each entry records the environment that created it; that
// environment's cleanup hook (napi/async.cc) releases whatever it still owns, so a terminated worker leaks nothing.

class Device;
class Communicator;
struct Program;

struct Buffer {
  uint32_t handle = 0;
  std::shared_ptr<Device> device;
  void* data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
  uint64_t ownerEnv = 0;
  std::shared_ptr<Buffer> parent;  // set for views: the view keeps its parent's memory alive and never frees it
  size_t bytes() const { return static_cast<size_t>(numel) * dtypeSize(dtype); }
  TensorRef ref() const { return TensorRef{data, numel, dtype, handle}; }
  ~Buffer();
};

// A device: one backend instance and the dedicated native thread that runs all of its work in order.
class Device : public std::enable_shared_from_this<Device> {
 public:
  Device(uint32_t id, std::unique_ptr<Backend> backend, uint64_t ownerEnv);
  ~Device();
  uint32_t id() const { return id_; }
  uint64_t ownerEnv() const { return ownerEnv_; }
  Backend& backend() { return *backend_; }
  const std::string& name() const { return name_; }

  // Queues work for the device thread; `done` runs on the device thread after the task, with the error (if any).
  void submit(std::function<void()> task, std::function<void(std::exception_ptr)> done);
  // Settles a finished task (`complete` wakes the JS thread waiting for it): on a ready helper thread, else put off
  // to this thread's idle time when more work is queued (at most its next task or 10 ms: Note [Wake-ups in idle time]
  // in idle_work.h), else at once. In the order called. On the device thread (from a task's `done`).
  void settle(std::function<void()> complete);
  // Runs `task` on the device thread and blocks the caller until it finished; rethrows its error.
  void runBlocking(const std::function<void()>& task);
  // Stops the thread after the queued work; idempotent.
  void shutdown();

  // How the last step run (runWith) on this device ended; read and written on the device thread only. A step run
  // queued behind an unconsumed one ('chained') is cancelled unless this is Ok (Note [Pipelined steps]).
  enum class LastRun { Ok, Tripped, Failed };
  LastRun lastRun = LastRun::Ok;

 private:
  void loop(TaskQueue& q);
  uint32_t id_;
  std::unique_ptr<Backend> backend_;
  uint64_t ownerEnv_;
  std::string name_;
  std::shared_ptr<TaskQueue> queue_ = std::make_shared<TaskQueue>();
  std::shared_ptr<IdleWork> idle_ = std::make_shared<IdleWork>();  // completions put off (settle)
  std::thread thread_;
};

using BackendFactory = std::function<std::unique_ptr<Backend>(int index)>;

class Registry {
 public:
  static Registry& get();

  void registerBackend(const std::string& kind, BackendFactory f, std::function<int()> count);
  std::vector<std::string> backendKinds();
  int deviceCount(const std::string& kind);

  std::shared_ptr<Device> openDevice(const std::string& kind, int index, uint64_t env);
  std::shared_ptr<Device> device(uint32_t id);  // throws if unknown
  void closeDevice(uint32_t id);

  std::shared_ptr<Buffer> alloc(uint32_t deviceId, int64_t numel, DType dtype, uint64_t env);
  std::shared_ptr<Buffer> buffer(uint32_t handle);  // throws if unknown
  // A view of `numel` elements of `parent` starting at element `offset` (gradient and weight arenas).
  std::shared_ptr<Buffer> allocView(uint32_t parent, int64_t offset, int64_t numel, uint64_t env);
  // A buffer of device `deviceId` that is `parent`'s whole memory (another device's): both devices' memory must be
  // host memory (Backend::hostMemory). Like a view, it keeps the memory alive and never frees it.
  std::shared_ptr<Buffer> allocShared(uint32_t deviceId, uint32_t parent, uint64_t env);
  bool canShare(uint32_t deviceId, uint32_t parent);
  void freeBuffer(uint32_t handle);

  std::shared_ptr<Program> addProgram(std::shared_ptr<Program> p);
  std::shared_ptr<Program> program(uint32_t handle);
  void releaseProgram(uint32_t handle);

  std::shared_ptr<Communicator> addComm(std::shared_ptr<Communicator> c);
  std::shared_ptr<Communicator> comm(uint32_t id);
  void releaseComm(uint32_t id);
  uint32_t newHandle();

  // Releases everything created by one environment (its cleanup hook); returns the devices it closed.
  std::vector<std::shared_ptr<Device>> releaseEnv(uint64_t env);
  struct Stats { size_t devices, buffers, programs, comms; int64_t bufferBytes; };
  Stats stats();

 private:
  std::mutex mu_;
  uint32_t nextHandle_ = 1;
  std::map<std::string, std::pair<BackendFactory, std::function<int()>>> factories_;
  std::map<uint32_t, std::shared_ptr<Device>> devices_;
  std::map<uint32_t, std::shared_ptr<Buffer>> buffers_;
  std::map<uint32_t, std::shared_ptr<Program>> programs_;
  std::map<uint32_t, std::shared_ptr<Communicator>> comms_;
};

}  // namespace tl
