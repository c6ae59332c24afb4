// The kernel contract table (Note [Kernel contracts]): one entry per kernel, in the order of docs/kernels.md.
#include <deque>
#include <string>

#include "kernel_args.h"
#include "kernel_contract.h"

namespace tl {

namespace {

using namespace kargs;

constexpr DType F32 = DType::F32, I32 = DType::I32, U8 = DType::U8;
const char* const kLayers = "Layers";
const char* const kElementwise = "Regularisation, norms, elementwise";
const char* const kOptim = "Optimizers (in place on weights and slots)";
const char* const kInput = "Input";
const char* const kConv = "Convolution and pooling";

AttrSpec D(const char* name, const char* note = nullptr) { return {name, AttrKind::Dim, note}; }
AttrSpec Num(const char* name, const char* note = nullptr) { return {name, AttrKind::Number, note}; }
AttrSpec Flag(const char* name) { return {name, AttrKind::Flag, nullptr}; }
const ArgSpec kHyper{"hyper", F32, "hyper"};

std::vector<AttrSpec> convAttrs() {
  return {D("B"), D("H"), D("W"), D("C"), D("K"), D("KH"), D("KW"), D("SH"), D("SW"), D("padding", "0 VALID, 1 SAME"),
          D("OH"), D("OW")};
}
std::vector<AttrSpec> poolAttrs() {
  return {D("B"), D("H"), D("W"), D("C"), D("KH"), D("KW"), D("SH"), D("SW"), D("padding", "0 VALID, 1 SAME"),
          D("OH"), D("OW")};
}
std::vector<AttrSpec> lrnAttrs() {
  return {D("N", "= B·H·W"), D("C"), D("depthRadius"), Num("bias"), Num("alpha"), Num("beta")};
}

// An activation pair: forward x -> y, backward (y, dy) -> dx.
KernelContract activation(const char* name, const char* computes) {
  return {name, kLayers, {{"x", F32, "(N)"}}, {{"y", F32, "(N)"}}, 0, {D("N")}, computes, parseSizeN};
}
KernelContract activationBackward(const char* name, const char* computes) {
  return {name, kLayers, {{"y", F32, "(N)"}, {"dy", F32, "(N)"}}, {{"dx", F32, "(N)"}}, 0, {D("N")}, computes, parseSizeN};
}
// An elementwise kernel over N with at most one numeric attribute.
KernelContract elementwise(const char* name, std::vector<ArgSpec> in, ArgSpec out, const char* coef,
                           const char* computes) {
  std::vector<AttrSpec> attrs{D("N")};
  if (coef) attrs.push_back(Num(coef));
  return {name, kElementwise, std::move(in), {out}, 0, std::move(attrs), computes, parseElementwise};
}

// The fused tail after the guard (Note [Fused parameter tail] in src/model/passes.ts): clip, update, EMA in one pass.
const char* const kClipNote = "≥ 0; 0: no clipping";
const char* const kDecayNote = "in (0, 1) with a shadow output, else unread";
const char* fusedComputes(const char* update) {
  static std::deque<std::string> texts;  // stable addresses; the table is built once and lives as long
  texts.push_back(std::string("one pass over a parameter after the guard: with clipNorm > 0, g *= min(1, clipNorm / "
                              "sqrt(s[0])) as `clip_by_norm` does (s = the global squared norm; g is written back "
                              "only when it scales); then `") +
                  update + "` with that g; then, with the shadow output, `ema_update` of the new w. The same bits "
                           "as those kernels in sequence");
  return texts.back().c_str();
}

std::vector<KernelContract> build() {
  const ArgSpec labels{"labels", I32, "(B)"}, idx{"idx", I32, "(B)"};
  return {
      // ---- layers ----
      {"dense_forward", kLayers, {{"x", F32, "(B,I)"}, {"W", F32, "(I,O)"}, {"b", F32, "(O)"}}, {{"y", F32, "(B,O)"}}, 0,
       {D("B"), D("I"), D("O")}, "y = x·W + b", parseDenseForward},
      {"dense_backward", kLayers, {{"x", F32, "(B,I)"}, {"W", F32, "(I,O)"}, {"dy", F32, "(B,O)"}},
       {{"dW", F32, "(I,O)"}, {"db", F32, "(O)"}, {"dx", F32, "(B,I)"}}, 1,
       {D("B"), D("I"), D("O"), Flag("accumulate"), Flag("noWeightGrad")},
       "dW = xᵀ·dy, db = Σ_rows dy, dx = dy·Wᵀ. With accumulate=1, dW and db are added to (dx is always overwritten). "
       "dx is computed only when a third output is given; with noWeightGrad=1 dW is left as it is (`dense_grad_norm` "
       "forms it later).",
       parseDenseBackward},
      {"matmul", kLayers, {{"A", F32, "(M,K)"}, {"B", F32, "(K,N)"}}, {{"C", F32, "(M,N)"}}, 0,
       {D("M"), D("N"), D("K"), Flag("transA"), Flag("transB")},
       "C = op(A)·op(B), row-major, op(X) = Xᵀ where its flag is 1 (A is then stored (K,M), B (N,K)): the plain GEMM "
       "inside `dense_*` and `conv2d_*` (bench/mnist-step.ts times a step's GEMMs with it: the practical floor)",
       parseMatmul},
      activation("relu_forward", "y = max(x, 0)"),
      activationBackward("relu_backward", "dx = dy where y > 0, else 0. dx may be the same buffer as dy."),
      activation("sigmoid_forward", "y = 1/(1+e^-x), computed stably for large |x|"),
      activationBackward("sigmoid_backward", "dx = dy·y·(1−y); dx may alias dy"),
      activation("tanh_forward", "y = tanh(x)"),
      activationBackward("tanh_backward", "dx = dy·(1−y²); dx may alias dy"),
      {"softmax_xent_forward", kLayers, {{"logits", F32, "(B,C)"}, labels, kHyper},
       {{"loss", F32, "(1)"}, {"probs", F32, "(B,C)"}}, 0, {D("B"), D("C")},
       "probs = softmax(logits) per row (max-subtracted); loss[0] = gradScale · Σ_rows −log probs[row, label]; "
       "computed as (logsumexp − logit[label]) for stability. A label outside [0, C) is an error naming the row and "
       "the value.",
       parseLabelled},
      {"softmax_xent_backward", kLayers, {{"probs", F32, "(B,C)"}, labels, kHyper}, {{"dlogits", F32, "(B,C)"}}, 0,
       {D("B"), D("C")}, "dlogits = gradScale · (probs − onehot(labels))", parseLabelled},
      {"mean_forward", kLayers, {{"x", F32, "(B,C)"}, kHyper}, {{"loss", F32, "(1)"}}, 0, {D("B"), D("C")},
       "loss[0] = gradScale · Σ_all x / C (mean over features, then weighted sum over rows: the seed-001 \"mean of the "
       "output\" loss); C > 0",
       parseMean},
      {"mean_backward", kLayers, {kHyper}, {{"dx", F32, "(B,C)"}}, 0, {D("B"), D("C")},
       "dx = gradScale / C everywhere; C > 0", parseMean},
      {"accuracy_count", kLayers, {{"logits", F32, "(B,C)"}, labels}, {{"count", F32, "(1)"}}, 0, {D("B"), D("C")},
       "count[0] = number of rows whose argmax (first max on ties) equals the label", parseLabelled},
      // ---- regularisation, norms, elementwise ----
      elementwise("l2_loss", {{"w", F32, "(N)"}}, {"loss", F32, "(1)"}, "lambda",
                  "accumulates: loss[0] += lambda · ½ Σ w² (TF's `l2_loss` times the weight)"),
      elementwise("l2_backward", {{"w", F32, "(N)"}}, {"g", F32, "(N)"}, "lambda", "in place: g += lambda · w"),
      elementwise("sum_squares", {{"x", F32, "(N)"}}, {"s", F32, "(1)"}, nullptr,
                  "accumulates: s[0] += Σ x² (accumulate in double)"),
      elementwise("clip_by_norm", {{"s", F32, "(1)"}}, {"g", F32, "(N)"}, "clipNorm",
                  "in place: g *= min(1, clipNorm / sqrt(s[0])) (s = global squared norm; s = 0 leaves g unchanged)"),
      {"l2_grad_norm", kElementwise, {{"w", F32, "(N)"}},
       {{"g", F32, "(N)"}, {"s", F32, "(1)"}, {"loss", F32, "(1)"}, {"local", F32, "(1)"}}, 1, {D("N"), Num("lambda")},
       "`l2_backward`, `sum_squares` and `l2_loss` in one pass (the fused tail before the guard): in place "
       "g += lambda · w; accumulates s[0] += Σ g² of the new g and loss[0] += lambda · ½ Σ w² (sums in double). The "
       "same bits as those three kernels on this one parameter. With `local`, also local[0] += Σ g² of the g it was "
       "given, as a `sum_squares` before it (a lone tower's local norm, Note [Non-finite guard])",
       parseElementwise},
      {"add_grad_norm", kElementwise, {{"w", F32, "(N)"}, {"a", F32, "(N)"}, {"b", F32, "(N)"}},
       {{"g", F32, "(N)"}, {"s", F32, "(1)"}, {"loss", F32, "(1)"}}, 0, {D("N"), Num("lambda")},
       "the sharded update's two-tower reduce and `l2_grad_norm` in one pass: g = a + b, then g += lambda · w when "
       "lambda > 0; accumulates s[0] += Σ g² and loss[0] += lambda · ½ Σ w² (sums in double, block by block)",
       parseElementwise},
      {"dense_grad_norm", kElementwise,
       {{"w", F32, "(N)"}, {"x0", F32, "(B,I)"}, {"dy0", F32, "(B,O)"}, {"n0", F32, "(1)"}, {"x1", F32, "(B,I)"},
        {"dy1", F32, "(B,O)"}, {"n1", F32, "(1)"}},
       {{"g", F32, "(N)"}, {"s", F32, "(1)"}, {"loss", F32, "(1)"}}, 0,
       {D("N"), D("B"), D("I"), D("O"), D("at"), Num("lambda")},
       "`add_grad_norm` with the two towers' weight gradients formed from their factors: g = elements [at, at+N) of "
       "x0ᵀ·dy0 + x1ᵀ·dy1 (I,O), over the first n0 and n1 rows (integers in [0, B], read when it runs; "
       "`dense_backward`'s dW of each, then their sum), then g += lambda · w when lambda > 0; accumulates s[0] += Σ g² "
       "and loss[0] += lambda · ½ Σ w² (sums in double, block by block)",
       parseDenseGradNorm},
      elementwise("fill", {}, {"x", F32, "(N)"}, "value", "x = value"),
      elementwise("scale", {}, {"x", F32, "(N)"}, "factor", "in place: x *= factor"),
      elementwise("axpy", {{"x", F32, "(N)"}}, {"y", F32, "(N)"}, "alpha", "in place: y += alpha · x"),
      elementwise("copy", {{"x", F32, "(N)"}}, {"y", F32, "(N)"}, nullptr, "y = x (bit-exact)"),
      {"hash_bits", kElementwise, {{"x", F32, "(N)"}}, {{"h", I32, "(2)"}}, 0, {D("N")},
       "h = low and high 32 bits of Σ_i splitmix64((i << 32) | bits(x[i])) mod 2^64: the exact bits, order-free "
       "(replica consistency check)",
       parseSizeN},
      // ---- optimizers ----
      {"sgd_update", kOptim, {{"g", F32, "(N)"}, kHyper}, {{"w", F32, "(N)"}}, 0, {D("N")}, "w −= lr·g", parseSizeN},
      {"momentum_update", kOptim, {{"g", F32, "(N)"}, kHyper}, {{"w", F32, "(N)"}, {"v", F32, "(N)"}}, 0,
       {D("N"), Num("momentum"), Flag("nesterov")},
       "v = momentum·v + g; w −= lr·v, or with nesterov w −= lr·(g + momentum·v) (TF's MomentumOptimizer)",
       parseMomentum},
      {"adam_update", kOptim, {{"g", F32, "(N)"}, kHyper}, {{"w", F32, "(N)"}, {"m", F32, "(N)"}, {"v", F32, "(N)"}}, 0,
       {D("N"), Num("beta1"), Num("beta2"), Num("epsilon")},
       "lr_t = lr·sqrt(1−beta2^t)/(1−beta1^t) (in double; t ≥ 1); m = beta1·m + (1−beta1)·g; "
       "v = beta2·v + (1−beta2)·g²; w −= lr_t·m/(sqrt(v)+epsilon) (TF's AdamOptimizer)",
       parseAdam},
      {"ema_update", kOptim, {{"w", F32, "(N)"}}, {{"shadow", F32, "(N)"}}, 0, {D("N"), Num("decay")},
       "shadow = decay·shadow + (1−decay)·w", parseEma},
      {"fused_sgd_update", kOptim, {{"s", F32, "(1)"}, kHyper}, {{"g", F32, "(N)"}, {"w", F32, "(N)"}, {"shadow", F32, "(N)"}},
       1, {D("N"), Num("clipNorm", kClipNote), Num("decay", kDecayNote)}, fusedComputes("sgd_update"), parseFusedSgd},
      {"fused_momentum_update", kOptim, {{"s", F32, "(1)"}, kHyper},
       {{"g", F32, "(N)"}, {"w", F32, "(N)"}, {"v", F32, "(N)"}, {"shadow", F32, "(N)"}}, 1,
       {D("N"), Num("momentum"), Flag("nesterov"), Num("clipNorm", kClipNote), Num("decay", kDecayNote)},
       fusedComputes("momentum_update"), parseFusedMomentum},
      {"fused_adam_update", kOptim, {{"s", F32, "(1)"}, kHyper},
       {{"g", F32, "(N)"}, {"w", F32, "(N)"}, {"m", F32, "(N)"}, {"v", F32, "(N)"}, {"shadow", F32, "(N)"}}, 1,
       {D("N"), Num("beta1"), Num("beta2"), Num("epsilon"), Num("clipNorm", kClipNote), Num("decay", kDecayNote)},
       fusedComputes("adam_update"), parseFusedAdam},
      // ---- input ----
      {"gather_rows_u8", kInput, {{"src", U8, "(R,D)"}, idx}, {{"y", F32, "(B,D)"}}, 0,
       {D("B"), D("D"), D("R"), Num("scale")},
       "y[b] = src[idx[b]] · scale; an index outside [0, R) is an error naming b and the index", parseGatherRowsU8},
      {"gather_rows_f32", kInput, {{"src", F32, "(R,D)"}, idx}, {{"y", F32, "(B,D)"}}, 0, {D("B"), D("D"), D("R")},
       "y[b] = src[idx[b]]", parseGatherRowsF32},
      {"gather_labels_u8", kInput, {{"src", U8, "(R)"}, idx}, {{"y", I32, "(B)"}}, 0, {D("B"), D("R")},
       "y[b] = src[idx[b]]", parseGatherLabels},
      {"crop_flip_standardize_u8", kInput, {{"src", U8, "(R,H,W,C)"}, idx, {"params", I32, "(B,3)"}},
       {{"y", F32, "(B,OH,OW,C)"}}, 0,
       {D("B"), D("R"), D("H"), D("W"), D("C"), D("OH", "1 ≤ OH ≤ H"), D("OW", "1 ≤ OW ≤ W")},
       "params[b] = [dy, dx, flip]: the crop of image src[idx[b]] at rows dy..dy+OH−1, columns dx..dx+OW−1 (NHWC), "
       "mirrored left-right when flip = 1, then per-image standardisation over its N = OH·OW·C raw byte values: "
       "y = (v − mean)/max(std, 1/√N) (population std; TF's `per_image_standardization`; statistics in double). The "
       "CIFAR-10 tutorial's preprocessing: random [dy, dx, flip] at training, the central crop "
       "[⌊(H−OH)/2⌋, ⌊(W−OW)/2⌋, 0] at evaluation. An index outside [0, R) or params outside dy ∈ [0, H−OH], "
       "dx ∈ [0, W−OW], flip ∈ {0, 1} is an error naming b and the values",
       parseCrop},
      // ---- convolution and pooling ----
      {"conv2d_forward", kConv, {{"x", F32, "(B,H,W,C)"}, {"w", F32, "(KH,KW,C,K)"}, {"b", F32, "(K)"}},
       {{"y", F32, "(B,OH,OW,K)"}}, 0, convAttrs(),
       "y[b,oh,ow,k] = b[k] + Σ_{kh,kw,c} x[b, oh·SH − pad_top + kh, ow·SW − pad_left + kw, c]·w[kh,kw,c,k], "
       "padding cells 0 (TF's `conv2d`, NHWC)",
       parseConvForward},
      {"conv2d_backward", kConv, {{"x", F32, "(B,H,W,C)"}, {"w", F32, "(KH,KW,C,K)"}, {"dy", F32, "(B,OH,OW,K)"}},
       {{"dw", F32, "(KH,KW,C,K)"}, {"db", F32, "(K)"}, {"dx", F32, "(B,H,W,C)"}}, 1,
       [] { auto a = convAttrs(); a.push_back(Flag("accumulate")); return a; }(),
       "dw = Σ_{b,oh,ow} x-window ⊗ dy, db = Σ_{b,oh,ow} dy, dx = the adjoint of the forward in x. With "
       "accumulate=1, dw and db are added to (dx is always overwritten). dx is computed only when a third output is "
       "given.",
       parseConvBackward},
      {"maxpool_forward", kConv, {{"x", F32, "(B,H,W,C)"}}, {{"y", F32, "(B,OH,OW,C)"}, {"argmax", I32, "(B,OH,OW,C)"}},
       0, poolAttrs(),
       "y = max over the window's input cells (padding cells never take part); argmax = flat index into x of that "
       "cell, the first (lowest index) on ties. B·H·W·C must fit i32.",
       parsePool},
      {"maxpool_backward", kConv, {{"dy", F32, "(B,OH,OW,C)"}, {"argmax", I32, "(B,OH,OW,C)"}},
       {{"dx", F32, "(B,H,W,C)"}}, 0, poolAttrs(),
       "dx = 0, then dx[argmax[o]] += dy[o]. Every argmax must be a cell of its own output's window (as "
       "`maxpool_forward` writes it), else an error naming the position and the value.",
       parsePool},
      {"lrn_forward", kConv, {{"x", F32, "(N,C)"}}, {{"y", F32, "(N,C)"}, {"scale", F32, "(N,C)"}}, 0, lrnAttrs(),
       "TF's `tf.nn.lrn` over the channels: scale[n,c] = bias + alpha·Σ_{c' = c − r}^{c + r} x[n,c']² "
       "(r = depthRadius, c' clipped to [0, C); alpha is not divided by the window size), y = x·scale^(−beta)",
       parseLrn},
      {"lrn_backward", kConv, {{"x", F32, "(N,C)"}, {"y", F32, "(N,C)"}, {"dy", F32, "(N,C)"}, {"scale", F32, "(N,C)"}},
       {{"dx", F32, "(N,C)"}}, 0, lrnAttrs(),
       "the exact gradient, from the forward's y and scale: dx[j] = dy[j]·scale[j]^(−beta) − "
       "2·alpha·beta·x[j]·Σ_{|c − j| ≤ r} dy[c]·y[c]/scale[c]",
       parseLrn},
      {"dropout_forward", kConv, {{"x", F32, "(N)"}, kHyper}, {{"y", F32, "(N)"}, {"mask", F32, "(N)"}}, 0,
       {D("N", "≤ 2³²"), Num("keepProb", "in (0, 1]"), D("seed", "< 9e15")},
       "step = t (a non-negative integer, rewritten before every step, so one compiled program draws a new mask each "
       "step; the CPU and reference check it, CUDA reads it on the device). mask[i] = 1/keepProb (rounded to f32) if "
       "h(seed, step, i) < ⌈keepProb·2³²⌉, else 0; y = x·mask. h is the counter-based hash below, the same on every "
       "backend, so a mask is a pure function of (seed, step, i) and runs reproduce bit for bit.",
       parseDropout},
      {"dropout_backward", kConv, {{"dy", F32, "(N)"}, {"mask", F32, "(N)"}}, {{"dx", F32, "(N)"}}, 0, {D("N")},
       "dx = dy·mask; dx may alias dy", parseSizeN},
  };
}

}  // namespace

const std::vector<KernelContract>& kernelContractTable() {
  static const std::vector<KernelContract> table = build();
  return table;
}

}  // namespace tl
