// Self-test of bad input: every bad call throws tl::Error naming what is wrong and the device, and writes nothing;
// and the registry holds the kernels.
#include <cstring>
#include <functional>

#include "../../kernel_contract.h"
#include "selftest.h"

namespace selftest {

namespace {

// Bad input must throw tl::Error (naming what is wrong) and leave every output untouched.
void expectThrow(const std::string& what, const std::function<void()>& f, const std::vector<std::vector<float>*>& outs,
                 const char* mustMention) {
  std::vector<std::vector<float>> before;
  for (auto* o : outs) before.push_back(*o);
  std::string msg = "(no exception)";
  bool threw = false;
  try {
    f();
  } catch (const tl::Error& e) {
    threw = true;
    msg = e.what();
  } catch (const std::exception& e) {
    msg = std::string("wrong exception type: ") + e.what();
  }
  bool unchanged = true;
  for (size_t i = 0; i < outs.size(); ++i)
    unchanged &= std::memcmp(before[i].data(), outs[i]->data(), before[i].size() * 4) == 0;
  const bool mentions = msg.find(mustMention) != std::string::npos && msg.find("cpu:0") != std::string::npos;
  report(threw && unchanged && mentions, "throws: " + what + "  [" + msg + "]");
}

}  // namespace

void testErrors() {
  const int B = 4, I = 3, O = 2, C = 3;
  auto x = rnd(B * I), W = rnd(I * O), b = rnd(O), y = rnd(B * O);
  auto Wsmall = rnd(I * O - 1);
  expectThrow("dense_forward with W too small", [&] {
    call("dense_forward", {ref(x), ref(Wsmall), ref(b)}, {ref(y)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&y}, "(I,O)");
  auto ysmall = rnd(B * O - 1);
  expectThrow("dense_forward with y too small", [&] {
    call("dense_forward", {ref(x), ref(W), ref(b)}, {ref(ysmall)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&ysmall}, "(B,O)");
  auto dW = rnd(I * O), db = rnd(O), dxs = rnd(B * I - 1);
  expectThrow("dense_backward with dx too small", [&] {
    call("dense_backward", {ref(x), ref(W), ref(y)}, {ref(dW), ref(db), ref(dxs)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&dW, &db, &dxs}, "dx");
  expectThrow("dense_forward missing attribute O", [&] {
    call("dense_forward", {ref(x), ref(W), ref(b)}, {ref(y)}, at({{"B", B}, {"I", I}}));
  }, {&y}, "'O'");
  expectThrow("dense_forward with 2 inputs", [&] {
    call("dense_forward", {ref(x), ref(W)}, {ref(y)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&y}, "input");
  std::vector<int32_t> xi(B * I, 1);
  expectThrow("dense_forward with i32 x", [&] {
    call("dense_forward", {ref(xi), ref(W), ref(b)}, {ref(y)}, at({{"B", B}, {"I", I}, {"O", O}}));
  }, {&y}, "f32");

  auto logits = rnd(B * C);
  std::vector<int32_t> labels = {0, 2, 3, 1};  // row 2 has label 3, outside [0,3)
  std::vector<float> hyper = {0.1f, 1.f, 0.25f}, loss = {7.f}, probs = rnd(B * C);
  expectThrow("softmax_xent_forward label out of range", [&] {
    call("softmax_xent_forward", {ref(logits), ref(labels), ref(hyper)}, {ref(loss), ref(probs)}, at({{"B", B}, {"C", C}}));
  }, {&loss, &probs}, "row=2 is 3");
  labels = {0, -1, 1, 1};
  auto dl = rnd(B * C);
  expectThrow("softmax_xent_backward negative label", [&] {
    call("softmax_xent_backward", {ref(probs), ref(labels), ref(hyper)}, {ref(dl)}, at({{"B", B}, {"C", C}}));
  }, {&dl}, "row=1 is -1");
  std::vector<float> cnt = {3.f};
  expectThrow("accuracy_count label out of range", [&] {
    call("accuracy_count", {ref(logits), ref(labels)}, {ref(cnt)}, at({{"B", B}, {"C", C}}));
  }, {&cnt}, "row=1 is -1");
  std::vector<float> shortHyper = {0.1f};
  expectThrow("softmax_xent_forward short hyper", [&] {
    labels = {0, 1, 2, 0};
    call("softmax_xent_forward", {ref(logits), ref(labels), ref(shortHyper)}, {ref(loss), ref(probs)}, at({{"B", B}, {"C", C}}));
  }, {&loss, &probs}, "hyper");

  std::vector<uint8_t> src(5 * 4, 9);
  std::vector<int32_t> idx = {0, 4, 1, 5};  // b=3 -> 5, outside [0,5)
  auto gy = rnd(4 * 4);
  expectThrow("gather_rows_u8 index out of range (last row)", [&] {
    call("gather_rows_u8", {ref(src), ref(idx)}, {ref(gy)}, at({{"B", 4}, {"D", 4}, {"R", 5}, {"scale", 1.0}}));
  }, {&gy}, "b=3 is 5");
  auto srcf = rnd(5 * 4);
  expectThrow("gather_rows_f32 index out of range", [&] {
    call("gather_rows_f32", {ref(srcf), ref(idx)}, {ref(gy)}, at({{"B", 4}, {"D", 4}, {"R", 5}}));
  }, {&gy}, "b=3 is 5");
  std::vector<uint8_t> srcSmall(5 * 4 - 1, 9);
  idx = {0, 1, 2, 3};
  expectThrow("gather_rows_u8 src smaller than (R,D)", [&] {
    call("gather_rows_u8", {ref(srcSmall), ref(idx)}, {ref(gy)}, at({{"B", 4}, {"D", 4}, {"R", 5}, {"scale", 1.0}}));
  }, {&gy}, "(R,D)");
  std::vector<int32_t> lab(4, -7);
  std::vector<uint8_t> lsrc(5, 1);
  idx = {0, 1, 2, -1};
  bool ok = false;
  try {
    call("gather_labels_u8", {ref(lsrc), ref(idx)}, {ref(lab)}, at({{"B", 4}, {"R", 5}}));
  } catch (const tl::Error& e) {
    ok = lab == std::vector<int32_t>(4, -7) && std::string(e.what()).find("b=3 is -1") != std::string::npos;
  }
  report(ok, "throws: gather_labels_u8 negative index, labels untouched");

  auto w = rnd(10), g9 = rnd(9);
  expectThrow("sgd_update g too small", [&] {
    call("sgd_update", {ref(g9), ref(hyper)}, {ref(w)}, at({{"N", 10}}));
  }, {&w}, "(N)");
  auto mm = rnd(10), vv = rnd(10), g10 = rnd(10), v9 = rnd(9);
  expectThrow("adam_update v too small", [&] {
    call("adam_update", {ref(g10), ref(hyper)}, {ref(w), ref(mm), ref(v9)},
         at({{"N", 10}, {"beta1", 0.9}, {"beta2", 0.999}, {"epsilon", 1e-8}}));
  }, {&w, &mm, &v9}, "v ");
  expectThrow("fill with negative N", [&] { call("fill", {}, {ref(w)}, at({{"N", -1}, {"value", 1}})); }, {&w}, "'N'");
  expectThrow("relu_forward N=2.5", [&] { call("relu_forward", {ref(w)}, {ref(mm)}, at({{"N", 2.5}})); }, {&mm}, "'N'");
}

// Every kernel of the contract table is registered, and nothing else (Note [Kernel contracts]).
void testRegistry() {
  std::string missing, extra;
  for (const KernelContract& k : kernelContracts())
    if (!cpuKernels().find(k.name)) missing += std::string(" ") + k.name;
  for (const auto& kv : cpuKernels().fns)
    if (!findContract(kv.first) || kv.second == nullptr) extra += " " + kv.first;
  report(missing.empty() && extra.empty(), "the registry holds the " + std::to_string(kernelContracts().size()) +
                                               " kernels of the contract table" + (missing.empty() ? "" : "; missing:" + missing) +
                                               (extra.empty() ? "" : "; not in the table or null:" + extra));
}

}  // namespace selftest
