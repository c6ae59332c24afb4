// Registry, Device thread and Program execution (see Note [Process-wide registry] in registry.h).
#include "registry.h"

#include <atomic>
#include <thread>

#include "affinity.h"
#include "collective/communicator.h"
#include "idle_work.h"
#include "program.h"

namespace tl {

Buffer::~Buffer() {
  if (data && device && !parent) device->backend().free(data);
}

// ---- Device ---------------------------------------------------------------------------------------------------

Device::Device(uint32_t id, std::unique_ptr<Backend> backend, uint64_t ownerEnv)
    : id_(id), backend_(std::move(backend)), ownerEnv_(ownerEnv), name_(backend_->name()) {
  thread_ = std::thread([this, q = queue_, w = idle_] {
    IdleWork::bindThread(w);  // the flush points of this thread (Note [Wake-ups in idle time])
    loop(*q);
  });
}

Device::~Device() { shutdown(); }

namespace {

// Device threads not asleep on their queue (running a task or spinning for one), for the queue's idle spin
// (Note [Spin for the next task]).
std::atomic<int> awakeDeviceThreads{0};

}  // namespace

void Device::loop(TaskQueue& q) {
  struct Awake {  // this thread, until it ends (the queue takes it out while it sleeps)
    Awake() { awakeDeviceThreads.fetch_add(1, std::memory_order_relaxed); }
    ~Awake() { awakeDeviceThreads.fetch_sub(1, std::memory_order_relaxed); }
  } awake;
  q.setIdleSpin([this] {
    // + 1: the JS thread, woken by the completion just made
    return !lastProgramHadPeers() && !backend_->helperReady() &&
           awakeDeviceThreads.load(std::memory_order_relaxed) + 1 <= machineThreads();
  }, &awakeDeviceThreads);
  std::exception_ptr bindError;
  try {
    backend_->bindThread();
  } catch (...) {
    // A device that cannot bind fails every task with the same error rather than dying silently.
    bindError = std::current_exception();
  }
  q.serve(bindError);
}

void Device::submit(std::function<void()> task, std::function<void(std::exception_ptr)> done) {
  TL_CHECK(queue_->submit(std::move(task), std::move(done)), "device " << name_ << " is closed; open it again before queueing work");
}

void Device::settle(std::function<void()> complete) {
  // Behind a completion already put off, this one waits too (the order); a helper that spins takes it now. What is
  // put off holds the device: the last reference may go before it ran.
  if (idle_->pending() || (!backend_->helperReady() && queue_->hasWork())) {
    idle_->defer([self = shared_from_this(), complete = std::move(complete)]() mutable { self->backend_->handOff(std::move(complete)); });
    return;
  }
  backend_->handOff(std::move(complete));
}

void Device::runBlocking(const std::function<void()>& task) {
  if (std::this_thread::get_id() == thread_.get_id()) {  // already on the device thread
    task();
    return;
  }
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;
  std::exception_ptr error;
  submit([&] { task(); },
         [&](std::exception_ptr e) {
           std::lock_guard<std::mutex> lk(m);
           error = e;
           finished = true;
           cv.notify_one();
         });
  std::unique_lock<std::mutex> lk(m);
  cv.wait(lk, [&] { return finished; });
  if (error) std::rethrow_exception(error);
}

void Device::shutdown() {
  queue_->stop();
  if (thread_.joinable()) {
    if (std::this_thread::get_id() == thread_.get_id())
      thread_.detach();  // the last reference died on the device thread itself
    else
      thread_.join();
  }
}

// ---- Registry ---------------------------------------------------------------------------------------------------

// CPU "devices" are logical: any number of them may share the host, so the count is a soft limit.
void registerCpuBackend() {
  Registry::get().registerBackend("cpu", makeCpuBackend, [] { return 1024; });
}

Registry& Registry::get() {
  static Registry* r = new Registry();  // never destroyed: environments may outlive static destructors
  return *r;
}

void Registry::registerBackend(const std::string& kind, BackendFactory f, std::function<int()> count) {
  std::lock_guard<std::mutex> lk(mu_);
  factories_[kind] = {std::move(f), std::move(count)};
}

std::vector<std::string> Registry::backendKinds() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> kinds;
  for (auto& kv : factories_) kinds.push_back(kv.first);
  return kinds;
}

int Registry::deviceCount(const std::string& kind) {
  std::function<int()> count;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = factories_.find(kind);
    if (it == factories_.end()) return 0;
    count = it->second.second;
  }
  return count();
}

std::shared_ptr<Device> Registry::openDevice(const std::string& kind, int index, uint64_t env) {
  BackendFactory factory;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = factories_.find(kind);
    if (it == factories_.end()) {
      std::string known;
      for (auto& kv : factories_) known += (known.empty() ? "" : ", ") + kv.first;
      TL_FAIL("unknown device kind '" << kind << "'; this build has: " << known
                                      << (kind == "cuda" ? " (the addon was built without nvcc; rebuild where nvcc is on PATH)" : ""));
    }
    factory = it->second.first;
  }
  auto backend = factory(index);  // may throw (bad index, no GPU)
  std::lock_guard<std::mutex> lk(mu_);
  uint32_t id = nextHandle_++;
  auto dev = std::make_shared<Device>(id, std::move(backend), env);
  devices_[id] = dev;
  return dev;
}

std::shared_ptr<Device> Registry::device(uint32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = devices_.find(id);
  TL_CHECK(it != devices_.end(), "no open device with id " << id << "; it was closed or never opened");
  return it->second;
}

void Registry::closeDevice(uint32_t id) {
  std::shared_ptr<Device> dev;
  std::vector<std::shared_ptr<Buffer>> bufs;
  std::vector<std::shared_ptr<Program>> progs;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = devices_.find(id);
    if (it == devices_.end()) return;
    dev = it->second;
    devices_.erase(it);
    for (auto b = buffers_.begin(); b != buffers_.end();) {
      if (b->second->device == dev) { bufs.push_back(b->second); b = buffers_.erase(b); } else ++b;
    }
    for (auto p = programs_.begin(); p != programs_.end();) {
      if (p->second->device == dev) { progs.push_back(p->second); p = programs_.erase(p); } else ++p;
    }
  }
  std::vector<std::shared_ptr<Communicator>> comms;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& kv : comms_)
      if (kv.second->involves(dev.get())) comms.push_back(kv.second);
  }
  for (auto& c : comms) c->abort("device " + dev->name() + " was closed (its worker exited or the runtime closed)");
  dev->shutdown();  // finish queued work first, outside the registry lock
}

std::shared_ptr<Buffer> Registry::alloc(uint32_t deviceId, int64_t numel, DType dtype, uint64_t env) {
  auto dev = device(deviceId);
  TL_CHECK(numel >= 1 && numel <= (int64_t(1) << 40),
           "alloc on " << dev->name() << ": element count must be between 1 and 2^40, got " << numel);
  auto buf = std::make_shared<Buffer>();
  buf->device = dev;
  buf->numel = numel;
  buf->dtype = dtype;
  buf->ownerEnv = env;
  buf->data = dev->backend().alloc(buf->bytes());
  std::lock_guard<std::mutex> lk(mu_);
  buf->handle = nextHandle_++;
  buffers_[buf->handle] = buf;
  return buf;
}

std::shared_ptr<Buffer> Registry::buffer(uint32_t handle) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = buffers_.find(handle);
  TL_CHECK(it != buffers_.end(), "no live buffer with handle " << handle << "; it was freed or never allocated");
  return it->second;
}

std::shared_ptr<Buffer> Registry::allocView(uint32_t parentHandle, int64_t offset, int64_t numel, uint64_t env) {
  auto parent = buffer(parentHandle);
  TL_CHECK(offset >= 0 && numel >= 1 && offset + numel <= parent->numel,
           "view [" << offset << ", " << offset + numel << ") is outside buffer #" << parentHandle << " of " << parent->numel << " elements");
  auto root = parent->parent ? parent->parent : parent;
  auto buf = std::make_shared<Buffer>();
  buf->device = parent->device;
  buf->numel = numel;
  buf->dtype = parent->dtype;
  buf->ownerEnv = env;
  buf->parent = root;
  buf->data = static_cast<uint8_t*>(parent->data) + static_cast<size_t>(offset) * dtypeSize(parent->dtype);
  std::lock_guard<std::mutex> lk(mu_);
  buf->handle = nextHandle_++;
  buffers_[buf->handle] = buf;
  return buf;
}

bool Registry::canShare(uint32_t deviceId, uint32_t parentHandle) {
  auto dev = device(deviceId);
  auto parent = buffer(parentHandle);
  return dev->backend().hostMemory() && parent->device->backend().hostMemory();
}

std::shared_ptr<Buffer> Registry::allocShared(uint32_t deviceId, uint32_t parentHandle, uint64_t env) {
  auto dev = device(deviceId);
  auto parent = buffer(parentHandle);
  TL_CHECK(dev->backend().hostMemory() && parent->device->backend().hostMemory(),
           "allocShared: buffer #" << parentHandle << " of " << parent->device->name() << " cannot be shared with " << dev->name()
                                   << "; only devices whose buffers are host memory (cpu) share buffers (check canShare first)");
  auto root = parent->parent ? parent->parent : parent;
  auto buf = std::make_shared<Buffer>();
  buf->device = dev;
  buf->numel = parent->numel;
  buf->dtype = parent->dtype;
  buf->ownerEnv = env;
  buf->parent = root;
  buf->data = parent->data;
  std::lock_guard<std::mutex> lk(mu_);
  buf->handle = nextHandle_++;
  buffers_[buf->handle] = buf;
  return buf;
}

uint32_t Registry::newHandle() {
  std::lock_guard<std::mutex> lk(mu_);
  return nextHandle_++;
}

std::shared_ptr<Communicator> Registry::addComm(std::shared_ptr<Communicator> c) {
  std::lock_guard<std::mutex> lk(mu_);
  comms_[c->id()] = c;
  return c;
}

std::shared_ptr<Communicator> Registry::comm(uint32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = comms_.find(id);
  TL_CHECK(it != comms_.end(), "no communicator with id " << id << "; it was released or never created");
  return it->second;
}

void Registry::releaseComm(uint32_t id) {
  std::shared_ptr<Communicator> keep;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = comms_.find(id);
  if (it == comms_.end()) return;
  keep = it->second;
  comms_.erase(it);
  keep->abort("the communicator was released (the run ended or the runtime closed)");
}

void Registry::freeBuffer(uint32_t handle) {
  std::shared_ptr<Buffer> keep;  // destroyed outside the lock
  std::lock_guard<std::mutex> lk(mu_);
  auto it = buffers_.find(handle);
  TL_CHECK(it != buffers_.end(), "free: no live buffer with handle " << handle << " (double free?)");
  keep = it->second;
  buffers_.erase(it);
}

std::shared_ptr<Program> Registry::addProgram(std::shared_ptr<Program> p) {
  std::lock_guard<std::mutex> lk(mu_);
  p->handle = nextHandle_++;
  programs_[p->handle] = p;
  return p;
}

std::shared_ptr<Program> Registry::program(uint32_t handle) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = programs_.find(handle);
  TL_CHECK(it != programs_.end(), "no compiled program with handle " << handle << "; it was released or never compiled");
  return it->second;
}

void Registry::releaseProgram(uint32_t handle) {
  std::shared_ptr<Program> keep;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = programs_.find(handle);
  if (it == programs_.end()) return;
  keep = it->second;
  programs_.erase(it);
}

std::vector<std::shared_ptr<Device>> Registry::releaseEnv(uint64_t env) {
  std::vector<uint32_t> devIds;
  std::vector<std::shared_ptr<Buffer>> bufs;
  std::vector<std::shared_ptr<Program>> progs;
  std::vector<std::shared_ptr<Device>> closed;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& kv : devices_)
      if (kv.second->ownerEnv() == env) devIds.push_back(kv.first);
    for (auto b = buffers_.begin(); b != buffers_.end();) {
      if (b->second->ownerEnv == env) { bufs.push_back(b->second); b = buffers_.erase(b); } else ++b;
    }
    for (auto p = programs_.begin(); p != programs_.end();) {
      if (p->second->ownerEnv == env) { progs.push_back(p->second); p = programs_.erase(p); } else ++p;
    }
    for (auto c = comms_.begin(); c != comms_.end();) {
      if (c->second->ownerEnv == env) { c->second->abort("the runtime that created it was closed"); c = comms_.erase(c); } else ++c;
    }
  }
  for (auto id : devIds) {
    auto dev = device(id);
    closed.push_back(dev);
    closeDevice(id);
  }
  return closed;
}

Registry::Stats Registry::stats() {
  std::lock_guard<std::mutex> lk(mu_);
  Stats s{devices_.size(), buffers_.size(), programs_.size(), comms_.size(), 0};
  for (auto& kv : buffers_)
    if (!kv.second->parent) s.bufferBytes += static_cast<int64_t>(kv.second->bytes());
  return s;
}

}  // namespace tl
