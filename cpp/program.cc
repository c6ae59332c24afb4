// The op compiler (special ops, buffers, kernels and their contract checks) and program execution.
#include "program.h"

#include <algorithm>
#include <cmath>

#include "collective/communicator.h"
#include "kernel_contract.h"
#include "registry.h"

namespace tl {

namespace {

enum class OpKind { Kernel, Mark, Guard, Collective, Fault, Overlap };  // the order of CompiledOp's alternatives
static_assert(std::variant_size_v<CompiledOp> == 6, "OpKind lists every alternative of CompiledOp");

// '@name' -> its kind; a name without '@' is a kernel. Unknown special ops are an error naming the known ones.
OpKind kindOf(const std::string& name, size_t i) {
  if (name.empty() || name[0] != '@') return OpKind::Kernel;
  if (name == "@mark") return OpKind::Mark;
  if (name == "@guard") return OpKind::Guard;
  if (name == "@collective") return OpKind::Collective;
  if (name == "@fault") return OpKind::Fault;
  if (name == "@bucket" || name == "@wait") return OpKind::Overlap;
  TL_CHECK_ARG(false, Range, "op #" << i << ": unknown special op '" << name
                                    << "'; the special ops are '@mark', '@guard', '@collective', '@fault', '@bucket' and '@wait'");
  return OpKind::Kernel;  // unreachable
}

std::shared_ptr<Buffer> bufferOn(const std::shared_ptr<Device>& dev, uint32_t handle, size_t i, const std::string& op,
                                 const char* list, size_t k) {
  auto b = Registry::get().buffer(handle);
  TL_CHECK(b->device == dev, "op #" << i << " (" << op << ") on " << dev->name() << ": " << list << "[" << k
                                    << "] is buffer #" << b->handle << " of " << b->device->name()
                                    << "; a kernel only reads and writes its own device's memory (move data with a collective)");
  return b;
}

// The one f32 buffer a '@guard' reads or a '@fault' writes.
std::shared_ptr<Buffer> oneF32(const std::shared_ptr<Device>& dev, const OpDesc& d, size_t i, bool output) {
  const auto& list = output ? d.out : d.in;
  TL_CHECK_ARG(list.size() == 1 && (output ? d.in : d.out).empty(), Type,
               "op #" << i << " (" << d.kernel << ") takes one f32 buffer as its " << (output ? "output" : "input")
                      << ", got " << d.in.size() << " inputs and " << d.out.size() << " outputs");
  auto b = bufferOn(dev, list[0], i, d.kernel, output ? "outputs" : "inputs", 0);
  TL_CHECK_ARG(b->dtype == DType::F32, Type, "op #" << i << " (" << d.kernel << ") takes one f32 buffer; buffer #"
                                                    << b->handle << " is " << dtypeName(b->dtype));
  return b;
}

// An integer attribute of a special op.
int intAttr(const OpDesc& d, size_t i, const char* k, double lo, double hi) {
  TL_CHECK_ARG(d.attrs.has(k), Type, "op #" << i << " (" << d.kernel << "): attribute '" << k << "' must be a number");
  const double v = d.attrs.get(k);
  TL_CHECK_ARG(v >= lo && v < hi && std::floor(v) == v, Range,
               "op #" << i << " (" << d.kernel << "): attribute '" << k << "' must be an integer in [" << lo << ", " << hi
                      << "), got " << v);
  return static_cast<int>(v);
}

KernelOp compileKernel(const std::shared_ptr<Device>& dev, const OpDesc& d, size_t i) {
  KernelOp k;
  k.name = d.kernel;
  k.fn = dev->backend().kernels().find(d.kernel);
  TL_CHECK(k.fn != nullptr, "op #" << i << ": no kernel named '" << d.kernel << "' on " << dev->name()
                                   << "; see docs/kernels.md for the kernels every backend has");
  for (size_t j = 0; j < d.in.size(); ++j) k.buffers.push_back(bufferOn(dev, d.in[j], i, d.kernel, "inputs", j));
  for (size_t j = 0; j < d.out.size(); ++j) k.buffers.push_back(bufferOn(dev, d.out[j], i, d.kernel, "outputs", j));
  for (size_t j = 0; j < k.buffers.size(); ++j) (j < d.in.size() ? k.in : k.out).push_back(k.buffers[j]->ref());
  k.attrs = d.attrs;
  KernelCall call{dev->backend(), k.name, k.in, k.out, k.attrs};
  k.args = checkKernelCall(call);
  return k;
}

}  // namespace

Program::Program() { std::fill(std::begin(faultNumel), std::end(faultNumel), int64_t(-1)); }

std::shared_ptr<Program> Program::compile(const std::shared_ptr<Device>& dev, const std::vector<OpDesc>& ops,
                                          uint64_t ownerEnv) {
  auto prog = std::make_shared<Program>();
  prog->device = dev;
  prog->ownerEnv = ownerEnv;
  prog->ops.reserve(ops.size());
  std::shared_ptr<BucketRunner> runner;  // shared by the program's '@bucket' and '@wait' ops
  for (size_t i = 0; i < ops.size(); ++i) {
    const OpDesc& d = ops[i];
    switch (kindOf(d.kernel, i)) {
      case OpKind::Kernel:
        prog->ops.emplace_back(compileKernel(dev, d, i));
        break;
      case OpKind::Mark:
        prog->ops.emplace_back(MarkOp{static_cast<int>(prog->marks.size())});
        prog->marks.push_back(0);
        break;
      case OpKind::Guard:
        prog->ops.emplace_back(GuardOp{oneF32(dev, d, i, false)});
        break;
      case OpKind::Collective: {
        CollectiveOp c;
        c.comm = Registry::get().comm(static_cast<uint32_t>(intAttr(d, i, "comm", 0, 4294967296.0)));
        c.rank = intAttr(d, i, "rank", 0, c.comm->size());
        prog->ops.emplace_back(std::move(c));
        break;
      }
      case OpKind::Fault: {
        FaultOp f{intAttr(d, i, "point", 0, kFaultPoints), oneF32(dev, d, i, true)};
        if (d.attrs.has("wrap")) f.wrap = intAttr(d, i, "wrap", 1, double(f.target->numel) + 1);
        const double space = f.wrap ? 2147483647.0 : double(f.target->numel);  // wrap: the plain op's index space
        if (d.attrs.has("from")) f.from = intAttr(d, i, "from", 0, space);
        if (d.attrs.has("to")) f.to = intAttr(d, i, "to", double(f.from + 1), space + 1);
        if (f.wrap) f.base = intAttr(d, i, "base", 0, double(f.from) + 1);
        if (!f.wrap && prog->faultNumel[f.point] < 0) prog->faultNumel[f.point] = f.target->numel;
        prog->ops.emplace_back(std::move(f));
        break;
      }
      case OpKind::Overlap:
        prog->ops.emplace_back(compileOverlapOp(dev, d, i, runner, intAttr));
        break;
    }
  }
  prog->withPeers = std::any_of(prog->ops.begin(), prog->ops.end(), [](const CompiledOp& op) {
    return std::holds_alternative<CollectiveOp>(op) || std::holds_alternative<OverlapOp>(op);
  });
  return prog;
}

std::vector<const CollectiveOp*> Program::collectives() const {
  std::vector<const CollectiveOp*> out;
  for (const CompiledOp& op : ops)
    if (auto* c = std::get_if<CollectiveOp>(&op)) out.push_back(c);
  return out;
}

double Program::collectiveWaitMs() const {
  double ms = 0;
  for (const CompiledOp& op : ops) {
    if (auto* c = std::get_if<CollectiveOp>(&op)) ms += c->comm->stats(c->rank).waitMs;
    else if (auto* o = std::get_if<OverlapOp>(&op); o && o->comm) ms += o->comm->stats(o->rank).waitMs;  // '@bucket'
  }
  return ms;
}

double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {
thread_local bool lastHadPeers = false;
}  // namespace

bool lastProgramHadPeers() { return lastHadPeers; }

void Program::execute(const FaultSpec* fault) {
  Backend& dev = device->backend();
  lastHadPeers = withPeers;
  auto t0 = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lk(statusMu);
    startMs = nowMs();
    guardTripped = false;
    std::fill(marks.begin(), marks.end(), -1.0);
  }
  struct Running {  // the backend's helper threads stay ready for the program's kernels until it ends
    Backend& dev;
    explicit Running(Backend& d) : dev(d) { dev.programBegins(); }
    ~Running() { dev.programEnds(); }
  } running(dev);
  try {
    executeOps(dev, t0, fault);
    // A run ends when its work has finished, not when it is queued: on an asynchronous backend (cuda) a run's done
    // then means its results are kept, a fault in its last kernels fails this run (not the next), and a timed run
    // measures the work itself.
    dev.sync();
  } catch (const std::exception& e) {
    currentOp = -1;
    // Peers blocked in a collective with this tower must not wait for a step that will never come.
    const std::string why = std::string("tower on ") + device->name() + " failed: " + e.what();
    for (const CollectiveOp* c : collectives()) c->comm->abort(why);
    std::vector<const OverlapOp*> overlap;
    for (const CompiledOp& op : ops)
      if (auto* o = std::get_if<OverlapOp>(&op)) overlap.push_back(o);
    abortOverlapOps(overlap, why);
    throw;
  }
  currentOp = -1;
}

void Program::executeOps(Backend& dev, std::chrono::steady_clock::time_point t0, const FaultSpec* fault) {
  int armed = fault ? fault->point : -1;  // the only thing an unarmed '@fault' op looks at
  for (size_t i = 0; i < ops.size(); ++i) {
    CompiledOp& op = ops[i];
    currentOp = static_cast<int>(i);
    switch (static_cast<OpKind>(op.index())) {
      case OpKind::Kernel: {
        KernelOp& k = *std::get_if<KernelOp>(&op);
        KernelCall call{dev, k.name, k.in, k.out, k.attrs, k.args.get()};
        k.fn(call);
        break;
      }
      case OpKind::Mark: {
        dev.sync();  // asynchronous backends: the mark means "work so far has finished"
        std::lock_guard<std::mutex> lk(statusMu);
        marks[std::get_if<MarkOp>(&op)->index] =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        break;
      }
      case OpKind::Guard: {
        float v = 0;
        dev.copyOut(&v, std::get_if<GuardOp>(&op)->value->data, sizeof(float));
        if (!std::isfinite(v)) {
          std::lock_guard<std::mutex> lk(statusMu);
          guardTripped = true;
          return;  // every tower sees the same reduced value, so all of them skip the same update
        }
        break;
      }
      case OpKind::Collective: {
        const CollectiveOp& c = *std::get_if<CollectiveOp>(&op);
        dev.sync();
        c.comm->execute(c.rank);
        break;
      }
      case OpKind::Fault: {
        const FaultOp& f = *std::get_if<FaultOp>(&op);
        if (f.point != armed) break;
        if ((fault->kind == FaultKind::NaN || fault->kind == FaultKind::BitFlip) && (fault->index < f.from || fault->index >= f.to)) break;
        armed = -1;  // once per run: at the first op of its point
        if (f.wrap) {
          FaultSpec at = *fault;
          at.index = (at.index - f.base) % f.wrap;
          applyFault(at, dev, *f.target, device->name());
        } else {
          applyFault(*fault, dev, *f.target, device->name());
        }
        break;
      }
      case OpKind::Overlap:
        runOverlapOp(*std::get_if<OverlapOp>(&op), dev);
        break;
    }
  }
}

}  // namespace tl
