// Compiled programs: a device's list of ops (kernels and the special ops), compiled once and run on its thread.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "collective/overlap.h"
#include "fault.h"
#include "kernel.h"

namespace tl {

class Backend;
class Communicator;
class Device;
struct Buffer;

// One op as given to compile(): a kernel name (or a special op's '@name'), buffer handles and attributes.
struct OpDesc {
  std::string kernel;
  std::vector<uint32_t> in, out;
  Attrs attrs;
};

// Note [Special ops]: besides kernels, a program holds six special ops, named with an '@' in the op lists TS
// builds and parsed once, at compile time, into their own types (no names are compared at run time):
//   '@mark'        records the time since the run started (a phase boundary of Tower timings; syncs the device);
//   '@guard'       inputs [v]: if v[0] is not finite, the rest of the program is skipped (Note [Non-finite guard]);
//   '@collective'  attrs {comm, rank}: runs the communicator's schedule as that rank (Note [Collective executor]);
//   '@fault'       attrs {point, from?, to?, wrap?, base?}, outputs [buf]: where an armed fault happens (Note [Fault
//                  injection]); with [from, to) a 'nan'/'bitflip' fires only at the op whose range holds its index;
//                  with wrap, [from, to) is in the index space of the point's plain op (another buffer's) and index
//                  i hits element (i − base) mod wrap of this op's buffer (a gradient's factor: Note [Shared gradients]);
//   '@bucket'      attrs {comm, rank, timeoutMs}: starts that bucket's collective off the device thread, and
//   '@wait'        attrs {timeoutMs}: waits for every started bucket (Note [Overlapped all-reduce] in collective/overlap.h).
struct KernelOp {
  KernelFn fn = nullptr;
  std::string name;
  std::vector<std::shared_ptr<Buffer>> buffers;  // pins the inputs and outputs for the program's lifetime
  std::vector<TensorRef> in, out;                // their views, built once
  Attrs attrs;
  std::unique_ptr<const KernelArgs> args;        // what the contract check parsed (Note [Kernel contracts])
};
struct MarkOp { int index = 0; };
struct GuardOp { std::shared_ptr<Buffer> value; };
struct CollectiveOp { std::shared_ptr<Communicator> comm; int rank = 0; };
struct FaultOp { int point = 0; std::shared_ptr<Buffer> target; int64_t from = 0, to = INT64_MAX, wrap = 0, base = 0; };
using CompiledOp = std::variant<KernelOp, MarkOp, GuardOp, CollectiveOp, FaultOp, OverlapOp>;

// Programs hold their buffers, so freeing a handle that a program still uses cannot leave a dangling pointer.
struct Program {
  uint32_t handle = 0;
  std::shared_ptr<Device> device;
  std::vector<CompiledOp> ops;
  bool withPeers = false;  // it has '@collective' or '@bucket' ops (lastProgramHadPeers)
  uint64_t ownerEnv = 0;
  int64_t faultNumel[kFaultPoints];  // numel of the first '@fault' op's buffer per point; -1: no op there
  std::vector<double> marks;  // milliseconds since the run started, one per '@mark' op (see Tower timings)
  double startMs = 0;         // when the last run started, on the process-wide steady clock (nowMs())
  bool guardTripped = false;  // the last run stopped at a '@guard' (non-finite value)
  std::atomic<int> currentOp{-1};  // the op running now, -1 when idle: the watchdog reads it from another thread
  std::mutex statusMu;        // guards marks/startMs/guardTripped against concurrent status reads

  Program();
  // Resolves every op on `device` (special ops, buffers, kernels) and runs the kernel contract checks; throws
  // naming the op, its index, the device and what is wrong.
  static std::shared_ptr<Program> compile(const std::shared_ptr<Device>& device, const std::vector<OpDesc>& ops,
                                          uint64_t ownerEnv);
  // On the device thread. `fault`: the one fault armed for this run (checked by checkFault), or nullptr.
  void execute(const FaultSpec* fault = nullptr);
  // The collectives this program takes part in.
  std::vector<const CollectiveOp*> collectives() const;
  // Ms this program's last run waited for the other ranks inside its all-reduces (runWith's waitMs, a tower's
  // `idle`): its collectives' barriers, and with overlap its buckets' (run on the bucket thread, same measure).
  double collectiveWaitMs() const;

 private:
  void executeOps(Backend& dev, std::chrono::steady_clock::time_point t0, const FaultSpec* fault);
};

// Whether the last program this thread ran takes part in collectives ('@collective' or '@bucket' ops): its device
// works in step with peers (Note [Spin for the next task] in task_queue.h).
bool lastProgramHadPeers();

// Milliseconds on the process-wide steady clock: every thread (and every worker) shares it, so timelines line up.
double nowMs();

}  // namespace tl
