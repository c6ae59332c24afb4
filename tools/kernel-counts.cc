// Instruction counts (under callgrind) and rough timings of CPU kernels at the shapes of the benchmark models, called
// as a compiled program calls them (the contract check first). Built and run by tools/kernel-counts.sh, which compares
// builds (e.g. main against this branch) by instructions, the figure a loaded machine cannot blur.
//
//   kernel-counts list | count CASE [calls] | time CASE [calls]
#include <valgrind/callgrind.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cpu/gemm.h"
#include "kernel_contract.h"

using namespace tl;

namespace {

struct Buf {
  std::vector<uint8_t> bytes;
  TensorRef ref;
  std::shared_ptr<Buf> parent;  // a view keeps its arena alive
};

// Deterministic fill without a slow generator: values away from zero, of both signs.
uint64_t g_state = 88172645463325252ull;
uint32_t next32() {
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return (uint32_t)(g_state >> 16);
}

std::shared_ptr<Buf> f32(int64_t n, float lo = -1.f, float hi = 1.f) {
  auto b = std::make_shared<Buf>();
  b->bytes.resize((size_t)n * 4 + 64);
  float* p = reinterpret_cast<float*>(b->bytes.data());
  for (int64_t i = 0; i < n; ++i) p[i] = lo + (hi - lo) * (float)(next32() & 0xffffff) / 16777216.f;
  b->ref = TensorRef{p, n, DType::F32, 0};
  return b;
}
std::shared_ptr<Buf> i32(int64_t n, int32_t limit) {
  auto b = std::make_shared<Buf>();
  b->bytes.resize((size_t)n * 4 + 64);
  int32_t* p = reinterpret_cast<int32_t*>(b->bytes.data());
  for (int64_t i = 0; i < n; ++i) p[i] = (int32_t)(next32() % (uint32_t)limit);
  b->ref = TensorRef{p, n, DType::I32, 0};
  return b;
}
std::shared_ptr<Buf> u8(int64_t n) {
  auto b = std::make_shared<Buf>();
  b->bytes.resize((size_t)n + 64);
  for (int64_t i = 0; i < n; ++i) b->bytes[i] = (uint8_t)next32();
  b->ref = TensorRef{b->bytes.data(), n, DType::U8, 0};
  return b;
}
std::shared_ptr<Buf> hyper() {
  auto h = f32(8);
  float* p = h->ref.f32();
  p[0] = 0.01f;  // lr
  p[1] = 3;      // t
  p[2] = 1.f / 128;
  return h;
}
std::shared_ptr<Buf> scalar(float v) {
  auto s = f32(1);
  s->ref.f32()[0] = v;
  return s;
}

struct Op {
  std::string kernel;
  std::vector<std::shared_ptr<Buf>> in, out;
  Attrs attrs;
};

struct Case {
  std::string name, what;
  std::function<std::vector<Op>()> make;
};

Attrs at(std::initializer_list<std::pair<const std::string, double>> kv) {
  Attrs a;
  a.values = kv;
  return a;
}

// The MNIST MLP's parameters (784-500-10) and the block network's (6 x 1000x1000 + bias).
const std::vector<int64_t> kMnist{392000, 500, 5000, 10};
const std::vector<int64_t> kMnistL2{1, 0, 1, 0};  // L2 on the weight matrices
std::vector<int64_t> blocksParams() {
  std::vector<int64_t> p;
  for (int i = 0; i < 6; ++i) p.insert(p.end(), {1000000, 1000});
  return p;
}

// The update tail of a step: today's op sequence ("unfused") or the fused one, over one arena.
std::vector<Op> tail(const std::vector<int64_t>& sizes, const std::vector<int64_t>& l2, bool adam, bool clip, bool fused) {
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  auto arenaW = f32(total), arenaG = f32(total, -0.01f, 0.01f);
  auto h = hyper(), reg = scalar(0), norm = scalar(0);
  std::vector<Op> ops;
  std::vector<std::shared_ptr<Buf>> ws, gs;
  int64_t off = 0;
  for (int64_t n : sizes) {  // views into the arenas
    auto w = std::make_shared<Buf>(), g = std::make_shared<Buf>();
    w->parent = arenaW;
    g->parent = arenaG;
    w->ref = TensorRef{arenaW->ref.f32() + off, n, DType::F32, 0};
    g->ref = TensorRef{arenaG->ref.f32() + off, n, DType::F32, 0};
    ws.push_back(w);
    gs.push_back(g);
    off += n;
  }
  const double lambda = 1e-4, clipNorm = clip ? 1e-3 : 0;  // a clip norm that acts
  // A fresh gradient first (as the all-reduce leaves one), so every call clips; both variants pay for this fill
  // (not a copy: valgrind replaces memmove with a slow one of its own).
  ops.push_back({"fill", {}, {arenaG}, at({{"N", (double)total}, {"value", 0.004}})});
  ops.push_back({"fill", {}, {reg}, at({{"N", 1}, {"value", 0}})});
  ops.push_back({"fill", {}, {norm}, at({{"N", 1}, {"value", 0}})});
  for (size_t p = 0; p < sizes.size(); ++p) {
    const double N = (double)sizes[p];
    if (fused)
      ops.push_back(l2[p] ? Op{"l2_grad_norm", {ws[p]}, {gs[p], norm, reg}, at({{"N", N}, {"lambda", lambda}})}
                          : Op{"sum_squares", {gs[p]}, {norm}, at({{"N", N}})});
    else if (l2[p]) {
      ops.push_back({"l2_loss", {ws[p]}, {reg}, at({{"N", N}, {"lambda", lambda}})});
      ops.push_back({"l2_backward", {ws[p]}, {gs[p]}, at({{"N", N}, {"lambda", lambda}})});
    }
  }
  if (!fused) ops.push_back({"sum_squares", {arenaG}, {norm}, at({{"N", (double)total}})});
  if (clip && !fused) ops.push_back({"clip_by_norm", {norm}, {arenaG}, at({{"N", (double)total}, {"clipNorm", clipNorm}})});
  for (size_t p = 0; p < sizes.size(); ++p) {
    const double N = (double)sizes[p];
    auto s1 = f32(sizes[p], -0.01f, 0.01f), s2 = f32(sizes[p], 1e-6f, 1e-4f);
    if (adam && fused)
      ops.push_back({"fused_adam_update", {norm, h}, {gs[p], ws[p], s1, s2},
                     at({{"N", N}, {"beta1", 0.5}, {"beta2", 0.9}, {"epsilon", 1e-8}, {"clipNorm", clipNorm}, {"decay", 0}})});
    else if (adam)
      ops.push_back({"adam_update", {gs[p], h}, {ws[p], s1, s2}, at({{"N", N}, {"beta1", 0.5}, {"beta2", 0.9}, {"epsilon", 1e-8}})});
    else if (fused)
      ops.push_back({"fused_momentum_update", {norm, h}, {gs[p], ws[p], s1},
                     at({{"N", N}, {"momentum", 0.9}, {"clipNorm", clipNorm}, {"decay", 0}})});
    else
      ops.push_back({"momentum_update", {gs[p], h}, {ws[p], s1}, at({{"N", N}, {"momentum", 0.9}})});
  }
  return ops;
}

std::vector<Case> cases() {
  const double W1 = 392000, ACT = 128 * 500, BLK = 64 * 1000, ADAM = 1000000;
  std::vector<Case> c;
  c.push_back({"gather", "gather_rows_u8 B=128 D=784 R=60000", [] {
                 return std::vector<Op>{{"gather_rows_u8", {u8(60000 * 784), i32(128, 60000)}, {f32(128 * 784)},
                                         at({{"B", 128}, {"D", 784}, {"R", 60000}, {"scale", 1 / 255.}})}};
               }});
  c.push_back({"sum_squares", "sum_squares N=397510 (the MNIST arena)", [] {
                 return std::vector<Op>{{"sum_squares", {f32(397510)}, {scalar(0)}, at({{"N", 397510}})}};
               }});
  c.push_back({"l2_loss", "l2_loss N=392000", [=] {
                 return std::vector<Op>{{"l2_loss", {f32(W1)}, {scalar(0)}, at({{"N", W1}, {"lambda", 1e-4}})}};
               }});
  c.push_back({"l2_backward", "l2_backward N=392000", [=] {
                 return std::vector<Op>{{"l2_backward", {f32(W1)}, {f32(W1)}, at({{"N", W1}, {"lambda", 1e-4}})}};
               }});
  c.push_back({"clip_by_norm", "clip_by_norm N=1000000 (acting)", [=] {
                 return std::vector<Op>{{"clip_by_norm", {scalar(100)}, {f32(ADAM)}, at({{"N", ADAM}, {"clipNorm", 5}})}};
               }});
  c.push_back({"sgd", "sgd_update N=392000", [=] {
                 return std::vector<Op>{{"sgd_update", {f32(W1), hyper()}, {f32(W1)}, at({{"N", W1}})}};
               }});
  c.push_back({"momentum", "momentum_update N=392000", [=] {
                 return std::vector<Op>{{"momentum_update", {f32(W1), hyper()}, {f32(W1), f32(W1)}, at({{"N", W1}, {"momentum", 0.9}})}};
               }});
  c.push_back({"adam", "adam_update N=1000000", [=] {
                 return std::vector<Op>{{"adam_update", {f32(ADAM), hyper()}, {f32(ADAM), f32(ADAM), f32(ADAM, 1e-6f, 1e-4f)},
                                         at({{"N", ADAM}, {"beta1", 0.5}, {"beta2", 0.9}, {"epsilon", 1e-8}})}};
               }});
  c.push_back({"fused_adam", "fused_adam_update N=1000000, clipping acts, with EMA", [=] {
                 return std::vector<Op>{{"fused_adam_update", {scalar(1e6), hyper()},
                                         {f32(ADAM), f32(ADAM), f32(ADAM), f32(ADAM, 1e-6f, 1e-4f), f32(ADAM)},
                                         at({{"N", ADAM}, {"beta1", 0.5}, {"beta2", 0.9}, {"epsilon", 1e-8},
                                             {"clipNorm", 5}, {"decay", 0.999}})}};
               }});
  c.push_back({"fused_momentum", "fused_momentum_update N=392000, no clipping, no EMA", [=] {
                 return std::vector<Op>{{"fused_momentum_update", {scalar(1), hyper()}, {f32(W1), f32(W1), f32(W1)},
                                         at({{"N", W1}, {"momentum", 0.9}, {"clipNorm", 0}, {"decay", 0}})}};
               }});
  c.push_back({"l2_grad_norm", "l2_grad_norm N=392000", [=] {
                 return std::vector<Op>{{"l2_grad_norm", {f32(W1)}, {f32(W1), scalar(0), scalar(0)}, at({{"N", W1}, {"lambda", 1e-4}})}};
               }});
  c.push_back({"ema", "ema_update N=392000", [=] {
                 return std::vector<Op>{{"ema_update", {f32(W1)}, {f32(W1)}, at({{"N", W1}, {"decay", 0.999}})}};
               }});
  c.push_back({"relu_forward", "relu_forward N=64000 (128x500)", [=] {
                 return std::vector<Op>{{"relu_forward", {f32(ACT)}, {f32(ACT)}, at({{"N", ACT}})}};
               }});
  c.push_back({"relu_backward", "relu_backward N=64000, in place", [=] {
                 auto dy = f32(ACT);
                 return std::vector<Op>{{"relu_backward", {f32(ACT), dy}, {dy}, at({{"N", ACT}})}};
               }});
  c.push_back({"sigmoid_backward", "sigmoid_backward N=64000 (64x1000), in place", [=] {
                 auto dy = f32(BLK);
                 return std::vector<Op>{{"sigmoid_backward", {f32(BLK, 0.01f, 0.99f), dy}, {dy}, at({{"N", BLK}})}};
               }});
  c.push_back({"sigmoid_forward", "sigmoid_forward N=64000 (64x1000)", [=] {
                 return std::vector<Op>{{"sigmoid_forward", {f32(BLK, -4, 4)}, {f32(BLK)}, at({{"N", BLK}})}};
               }});
  c.push_back({"dense_bias_grad", "dense_backward B=64 I=1 O=1000 (the bias column sums; GEMMs trivial)", [] {
                 return std::vector<Op>{{"dense_backward", {f32(64), f32(1000), f32(64000)}, {f32(1000), f32(1000)},
                                         at({{"B", 64}, {"I", 1}, {"O", 1000}})}};
               }});
  // CIFAR-10's LRN after the first pooling: B=128 x 12x12 rows of 64 channels, depth radius 4, beta 0.75
  const int64_t LRN_N = 128 * 12 * 12, LRN = LRN_N * 64;
  const auto lrnAttrs = [=] {
    return at({{"N", (double)LRN_N}, {"C", 64}, {"depthRadius", 4}, {"bias", 1}, {"alpha", 0.001 / 9}, {"beta", 0.75}});
  };
  c.push_back({"lrn_forward", "lrn_forward N=18432 C=64 r=4 (CIFAR-10 after pool1)", [=] {
                 return std::vector<Op>{{"lrn_forward", {f32(LRN)}, {f32(LRN), f32(LRN)}, lrnAttrs()}};
               }});
  c.push_back({"lrn_backward", "lrn_backward N=18432 C=64 r=4", [=] {
                 return std::vector<Op>{{"lrn_backward", {f32(LRN), f32(LRN), f32(LRN), f32(LRN, 1.f, 2.f)}, {f32(LRN)},
                                         lrnAttrs()}};
               }});
  // CIFAR-10's convolutions at batch 16, an eighth of the bench's (callgrind runs them in about a minute each);
  // Note [Conv chunks] in cpp/cpu/kernels_conv2d.cc
  const auto convAttrs = [](double H, double C, double acc) {
    return at({{"B", 16}, {"H", H}, {"W", H}, {"C", C}, {"K", 64}, {"KH", 5}, {"KW", 5}, {"SH", 1}, {"SW", 1},
               {"padding", 1}, {"OH", H}, {"OW", H}, {"accumulate", acc}});
  };
  const int64_t X1 = 16 * 24 * 24 * 3, Y1 = 16 * 24 * 24 * 64, X2 = 16 * 12 * 12 * 64, W2 = 25 * 64 * 64;
  c.push_back({"conv1_forward", "conv2d_forward B=16 24x24x3 -> 64, 5x5 SAME (CIFAR-10 conv1)", [=] {
                 return std::vector<Op>{{"conv2d_forward", {f32(X1), f32(25 * 3 * 64), f32(64)}, {f32(Y1)}, convAttrs(24, 3, 0)}};
               }});
  c.push_back({"conv1_backward", "conv2d_backward B=16 24x24x3 -> 64, no dx (CIFAR-10 conv1)", [=] {
                 return std::vector<Op>{{"conv2d_backward", {f32(X1), f32(25 * 3 * 64), f32(Y1)}, {f32(25 * 3 * 64), f32(64)},
                                         convAttrs(24, 3, 0)}};
               }});
  c.push_back({"conv2_forward", "conv2d_forward B=16 12x12x64 -> 64, 5x5 SAME (CIFAR-10 conv2)", [=] {
                 return std::vector<Op>{{"conv2d_forward", {f32(X2), f32(W2), f32(64)}, {f32(X2)}, convAttrs(12, 64, 0)}};
               }});
  c.push_back({"conv2_backward", "conv2d_backward B=16 12x12x64 -> 64, with dx (CIFAR-10 conv2)", [=] {
                 return std::vector<Op>{{"conv2d_backward", {f32(X2), f32(W2), f32(X2)}, {f32(W2), f32(64), f32(X2)},
                                         convAttrs(12, 64, 0)}};
               }});
  c.push_back({"tail_mnist_unfused", "MNIST update tail (after a gradient fill), today's ops: L2 loss+grad, arena norm, momentum x4",
               [] { return tail(kMnist, kMnistL2, false, false, false); }});
  c.push_back({"tail_mnist_fused", "MNIST update tail (after a gradient fill), fused: l2_grad_norm / sum_squares, fused_momentum_update x4",
               [] { return tail(kMnist, kMnistL2, false, false, true); }});
  c.push_back({"tail_blocks_unfused", "blocks update tail (after a gradient fill), today's ops: arena norm, clip, adam x12",
               [] { return tail(blocksParams(), std::vector<int64_t>(12, 0), true, true, false); }});
  c.push_back({"tail_blocks_fused", "blocks update tail (after a gradient fill), fused: sum_squares, fused_adam_update (clip) x12",
               [] { return tail(blocksParams(), std::vector<int64_t>(12, 0), true, true, true); }});
  return c;
}

struct Compiled {
  std::vector<Op> ops;
  std::vector<std::vector<TensorRef>> in, out;
  std::vector<std::unique_ptr<KernelArgs>> parsed;
  std::vector<KernelFn> fns;
};

bool compile(const Case& k, Compiled& p) {
  p.ops = k.make();
  for (Op& op : p.ops) {
    KernelFn f = cpuKernels().find(op.kernel);
    if (!f) {
      std::printf("%s: kernel %s is not in this build\n", k.name.c_str(), op.kernel.c_str());
      return false;
    }
    p.fns.push_back(f);
    std::vector<TensorRef> in, out;
    for (auto& b : op.in) in.push_back(b->ref);
    for (auto& b : op.out) out.push_back(b->ref);
    p.in.push_back(in);
    p.out.push_back(out);
  }
  return true;
}

void run(Backend& dev, Compiled& p) {
  if (p.parsed.empty())
    for (size_t i = 0; i < p.ops.size(); ++i) {
      KernelCall c{dev, p.ops[i].kernel, p.in[i], p.out[i], p.ops[i].attrs};
      p.parsed.push_back(checkKernelCall(c));
    }
  for (size_t i = 0; i < p.ops.size(); ++i) {
    KernelCall c{dev, p.ops[i].kernel, p.in[i], p.out[i], p.ops[i].attrs};
    c.parsed = p.parsed[i].get();
    p.fns[i](c);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "list";
  if (mode == "list") {
    for (const Case& c : cases()) std::printf("%-22s %s\n", c.name.c_str(), c.what.c_str());
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: kernel-counts list | count CASE [calls] | time CASE [calls]\n");
    return 2;
  }
  const int calls = argc > 3 ? std::atoi(argv[3]) : (mode == "count" ? 3 : 200);
  for (const Case& k : cases()) {
    if (k.name != argv[2]) continue;
    // TOWERLINE_GEMM_THREADS=n binds n GEMM threads to this thread, as a CPU device binds its own (default 1). Keep 1
    // under callgrind: it collects only on this thread (the toggles below), so pool threads' work would go uncounted;
    // with 1, the inclusive count of GemmThreads::forEach is the work the threads would share.
    const char* gt = std::getenv("TOWERLINE_GEMM_THREADS");
    static GemmThreads threads(gt ? std::atoi(gt) : 1);
    GemmThreads::bind(&threads);
    std::unique_ptr<Backend> dev = makeCpuBackend(0);
    Compiled p;
    if (!compile(k, p)) return 3;
    run(*dev, p);  // warm: parse, first touch
    if (mode == "count") {
      CALLGRIND_ZERO_STATS;
      CALLGRIND_TOGGLE_COLLECT;
      for (int i = 0; i < calls; ++i) run(*dev, p);
      CALLGRIND_TOGGLE_COLLECT;
      std::printf("%s: %d calls counted\n", k.name.c_str(), calls);
    } else {
      double best = 1e30;
      for (int r = 0; r < 7; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) run(*dev, p);
        const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
        best = best < us ? best : us;
      }
      std::printf("%-22s %10.1f us/call (best of 7 x %d calls)  %s\n", k.name.c_str(), best, calls, k.what.c_str());
    }
    return 0;
  }
  std::fprintf(stderr, "no case named %s (kernel-counts list)\n", argv[2]);
  return 2;
}
