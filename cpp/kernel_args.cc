// The kernel argument checks declared in kernel_args.h, written once for the CPU and CUDA backends.
#include "kernel_args.h"

#include <initializer_list>
#include <sstream>

namespace tl {
namespace kargs {

// An f32 buffer of at least n elements. Where n is a shape product, the callers check the type first and compute the
// product after it (mul can throw), so the errors come in the order of the buffers.
static void expectF32(const KernelCall& c, const TensorRef& t, const char* name, int64_t n, const char* shape = "(N)") {
  c.expectType(t, name, DType::F32);
  c.expectSize(t, name, n, shape);
}

// An f32 (B,C) matrix: the type first, then the size (the product B·C is checked for overflow after the type).
static void expectBC(const KernelCall& c, const TensorRef& t, const char* name, int64_t B, int64_t C) {
  c.expectType(t, name, DType::F32);
  c.expectSize(t, name, mul(c, B, C), "(B,C)");
}

// Attribute `name` must be 0 or 1 (default 0).
static bool flagAttr(const KernelCall& c, const char* name) {
  const double v = attr(c, name, 0);
  TL_KCHECK(c, v == 0 || v == 1, "attribute " << name << " must be 0 or 1, got " << v);
  return v == 1;
}

void failIndex(const KernelCall& c, const IndexRange& r, int64_t at, int32_t value) {
  std::ostringstream os;
  os << r.what << " at " << r.row << "=" << at << " is " << value << ", outside [0, " << r.range << "=" << r.limit
     << ")";
  c.fail(os.str(), __FILE__, __LINE__);
}

// ---- layers -------------------------------------------------------------------------------------------------------

DenseArgs denseForwardArgs(const KernelCall& c) {
  c.expectArity(3, 1, 1);
  DenseArgs a;
  a.B = dim(c, "B"); a.I = dim(c, "I"); a.O = dim(c, "O");
  const TensorRef &x = c.in[0], &W = c.in[1], &b = c.in[2], &y = c.out[0];
  c.expectType(x, "x", DType::F32); c.expectType(W, "W", DType::F32);
  c.expectType(b, "b", DType::F32); c.expectType(y, "y", DType::F32);
  c.expectSize(x, "x", mul(c, a.B, a.I), "(B,I)");
  c.expectSize(W, "W", mul(c, a.I, a.O), "(I,O)");
  c.expectSize(b, "b", a.O, "(O)");
  c.expectSize(y, "y", mul(c, a.B, a.O), "(B,O)");
  a.iB = gemmDim(c, a.B, "B"); a.iI = gemmDim(c, a.I, "I"); a.iO = gemmDim(c, a.O, "O");
  return a;
}

DenseBackwardArgs denseBackwardArgs(const KernelCall& c) {
  c.expectArity(3, 2, 3);
  DenseBackwardArgs a;
  a.B = dim(c, "B"); a.I = dim(c, "I"); a.O = dim(c, "O");
  a.acc = flagAttr(c, "accumulate");
  const TensorRef &x = c.in[0], &W = c.in[1], &dy = c.in[2], &dW = c.out[0], &db = c.out[1];
  c.expectType(x, "x", DType::F32); c.expectType(W, "W", DType::F32); c.expectType(dy, "dy", DType::F32);
  c.expectType(dW, "dW", DType::F32); c.expectType(db, "db", DType::F32);
  c.expectSize(x, "x", mul(c, a.B, a.I), "(B,I)");
  c.expectSize(W, "W", mul(c, a.I, a.O), "(I,O)");
  c.expectSize(dy, "dy", mul(c, a.B, a.O), "(B,O)");
  c.expectSize(dW, "dW", mul(c, a.I, a.O), "(I,O)");
  c.expectSize(db, "db", a.O, "(O)");
  a.wantDx = c.out.size() == 3;
  if (a.wantDx) {
    c.expectType(c.out[2], "dx", DType::F32);
    c.expectSize(c.out[2], "dx", mul(c, a.B, a.I), "(B,I)");
  }
  a.iB = gemmDim(c, a.B, "B"); a.iI = gemmDim(c, a.I, "I"); a.iO = gemmDim(c, a.O, "O");
  return a;
}

// The unary elementwise layout: in a (N) f32 [, b (N) f32], out (N) f32.
static int64_t unaryArgs(const KernelCall& c, size_t nIn, const char* inName, const char* in2Name,
                         const char* outName) {
  c.expectArity(nIn, 1, 1);
  const int64_t N = dim(c, "N");
  expectF32(c, c.in[0], inName, N);
  if (nIn == 2) expectF32(c, c.in[1], in2Name, N);
  expectF32(c, c.out[0], outName, N);
  return N;
}

int64_t activationForwardArgs(const KernelCall& c) { return unaryArgs(c, 1, "x", nullptr, "y"); }
int64_t activationBackwardArgs(const KernelCall& c) { return unaryArgs(c, 2, "y", "dy", "dx"); }

// B, C and a (B,C) f32 matrix with its labels (B) i32 buffer (the label values are scanned by the backend).
static LabelledArgs logitsLabels(const KernelCall& c, const TensorRef& m, const char* mName, const TensorRef& labels) {
  LabelledArgs a;
  a.B = dim(c, "B"); a.C = dim(c, "C");
  expectBC(c, m, mName, a.B, a.C);
  c.expectType(labels, "labels", DType::I32);
  c.expectSize(labels, "labels", a.B, "(B)");
  a.labels = IndexRange{labels.i32(), a.B, a.C, "label", "row", "C"};
  return a;
}

LabelledArgs softmaxXentForwardArgs(const KernelCall& c) {
  c.expectArity(3, 2, 2);
  const LabelledArgs a = logitsLabels(c, c.in[0], "logits", c.in[1]);
  expectHyper(c, c.in[2]);
  expectF32(c, c.out[0], "loss", 1, "(1)");
  expectBC(c, c.out[1], "probs", a.B, a.C);
  return a;
}

LabelledArgs softmaxXentBackwardArgs(const KernelCall& c) {
  c.expectArity(3, 1, 1);
  const LabelledArgs a = logitsLabels(c, c.in[0], "probs", c.in[1]);
  expectHyper(c, c.in[2]);
  expectBC(c, c.out[0], "dlogits", a.B, a.C);
  return a;
}

LabelledArgs accuracyCountArgs(const KernelCall& c) {
  c.expectArity(2, 1, 1);
  const LabelledArgs a = logitsLabels(c, c.in[0], "logits", c.in[1]);
  expectF32(c, c.out[0], "count", 1, "(1)");
  return a;
}

static MeanArgs meanDims(const KernelCall& c) {
  MeanArgs a;
  a.B = dim(c, "B"); a.C = dim(c, "C");
  TL_KCHECK(c, a.C > 0, "C must be positive (mean over zero features)");
  return a;
}

MeanArgs meanForwardArgs(const KernelCall& c) {
  c.expectArity(2, 1, 1);
  const MeanArgs a = meanDims(c);
  expectBC(c, c.in[0], "x", a.B, a.C);
  expectHyper(c, c.in[1]);
  expectF32(c, c.out[0], "loss", 1, "(1)");
  return a;
}

MeanArgs meanBackwardArgs(const KernelCall& c) {
  c.expectArity(1, 1, 1);
  const MeanArgs a = meanDims(c);
  expectHyper(c, c.in[0]);
  expectBC(c, c.out[0], "dx", a.B, a.C);
  return a;
}

// ---- elementwise, regularisation, norms ---------------------------------------------------------------------------

// The elementwise layout: N, then the kernel's attribute (if any), then the f32 inputs and the one f32 output, each
// (N) or a scalar (1).
struct VecSpec {
  const char* name;
  bool scalar;  // (1) instead of (N)
};
static ElementwiseArgs elementwiseArgs(const KernelCall& c, const char* coefAttr, std::initializer_list<VecSpec> ins,
                                       VecSpec out) {
  c.expectArity(ins.size(), 1, 1);
  ElementwiseArgs a;
  a.N = dim(c, "N");
  a.coef = coefAttr ? attr(c, coefAttr) : 0.0;
  size_t k = 0;
  for (const VecSpec& s : ins) {
    if (s.scalar) expectF32(c, c.in[k], s.name, 1, "(1)");
    else expectF32(c, c.in[k], s.name, a.N);
    ++k;
  }
  if (out.scalar) expectF32(c, c.out[0], out.name, 1, "(1)");
  else expectF32(c, c.out[0], out.name, a.N);
  return a;
}

ElementwiseArgs l2LossArgs(const KernelCall& c) { return elementwiseArgs(c, "lambda", {{"w", false}}, {"loss", true}); }
ElementwiseArgs l2BackwardArgs(const KernelCall& c) { return elementwiseArgs(c, "lambda", {{"w", false}}, {"g", false}); }
ElementwiseArgs sumSquaresArgs(const KernelCall& c) { return elementwiseArgs(c, nullptr, {{"x", false}}, {"s", true}); }
ElementwiseArgs clipByNormArgs(const KernelCall& c) { return elementwiseArgs(c, "clipNorm", {{"s", true}}, {"g", false}); }
ElementwiseArgs fillArgs(const KernelCall& c) { return elementwiseArgs(c, "value", {}, {"x", false}); }
ElementwiseArgs scaleArgs(const KernelCall& c) { return elementwiseArgs(c, "factor", {}, {"x", false}); }
ElementwiseArgs axpyArgs(const KernelCall& c) { return elementwiseArgs(c, "alpha", {{"x", false}}, {"y", false}); }
ElementwiseArgs copyArgs(const KernelCall& c) { return elementwiseArgs(c, nullptr, {{"x", false}}, {"y", false}); }

// ---- optimizers ---------------------------------------------------------------------------------------------------

// g (N) and hyper in; the slots named in `outs` (N) out.
static void optimBuffers(const KernelCall& c, int64_t N, std::initializer_list<const char*> outs) {
  expectF32(c, c.in[0], "g", N);
  expectHyper(c, c.in[1]);
  size_t k = 0;
  for (const char* name : outs) expectF32(c, c.out[k++], name, N);
}

int64_t sgdUpdateArgs(const KernelCall& c) {
  c.expectArity(2, 1, 1);
  const int64_t N = dim(c, "N");
  optimBuffers(c, N, {"w"});
  return N;
}

MomentumArgs momentumUpdateArgs(const KernelCall& c) {
  c.expectArity(2, 2, 2);
  MomentumArgs a;
  a.N = dim(c, "N");
  a.momentum = (float)attr(c, "momentum");
  a.nesterov = flagAttr(c, "nesterov");
  optimBuffers(c, a.N, {"w", "v"});
  return a;
}

AdamArgs adamUpdateArgs(const KernelCall& c) {
  c.expectArity(2, 3, 3);
  AdamArgs a;
  a.N = dim(c, "N");
  a.beta1 = attr(c, "beta1"); a.beta2 = attr(c, "beta2"); a.epsilon = attr(c, "epsilon");
  optimBuffers(c, a.N, {"w", "m", "v"});
  return a;
}

EmaArgs emaUpdateArgs(const KernelCall& c) {
  c.expectArity(1, 1, 1);
  EmaArgs a;
  a.N = dim(c, "N");
  a.decay = attr(c, "decay");
  expectF32(c, c.in[0], "w", a.N);
  expectF32(c, c.out[0], "shadow", a.N);
  return a;
}

// ---- input --------------------------------------------------------------------------------------------------------

// idx (B) i32, indexing R rows.
static IndexRange expectIndexBatch(const KernelCall& c, const TensorRef& idx, int64_t B, int64_t R) {
  c.expectType(idx, "idx", DType::I32);
  c.expectSize(idx, "idx", B, "(B)");
  return IndexRange{idx.i32(), B, R, "index", "b", "R"};
}

GatherRowsArgs gatherRowsArgs(const KernelCall& c, DType srcType, bool readScale) {
  c.expectArity(2, 1, 1);
  GatherRowsArgs a;
  a.B = dim(c, "B"); a.D = dim(c, "D"); a.R = dim(c, "R");
  a.scale = readScale ? (float)attr(c, "scale") : 1.f;
  c.expectType(c.in[0], "src", srcType);
  c.expectSize(c.in[0], "src", mul(c, a.R, a.D), "(R,D)");
  a.idx = expectIndexBatch(c, c.in[1], a.B, a.R);
  c.expectType(c.out[0], "y", DType::F32);
  c.expectSize(c.out[0], "y", mul(c, a.B, a.D), "(B,D)");
  return a;
}

GatherLabelsArgs gatherLabelsArgs(const KernelCall& c) {
  c.expectArity(2, 1, 1);
  GatherLabelsArgs a;
  a.B = dim(c, "B"); a.R = dim(c, "R");
  c.expectType(c.in[0], "src", DType::U8);
  c.expectSize(c.in[0], "src", a.R, "(R)");
  a.idx = expectIndexBatch(c, c.in[1], a.B, a.R);
  c.expectType(c.out[0], "y", DType::I32);
  c.expectSize(c.out[0], "y", a.B, "(B)");
  return a;
}

CropArgs cropFlipStandardizeArgs(const KernelCall& c) {
  c.expectArity(3, 1, 1);
  CropArgs a;
  a.B = dim(c, "B"); a.R = dim(c, "R"); a.H = dim(c, "H"); a.W = dim(c, "W"); a.C = dim(c, "C");
  a.OH = dim(c, "OH"); a.OW = dim(c, "OW");
  TL_KCHECK(c, a.OH >= 1 && a.OW >= 1 && a.OH <= a.H && a.OW <= a.W,
            "crop OH=" << a.OH << " OW=" << a.OW << " must be at least 1x1 and fit the image H=" << a.H
                       << " W=" << a.W);
  a.img = mul(c, mul(c, a.H, a.W), a.C);
  a.N = mul(c, mul(c, a.OH, a.OW), a.C);
  c.expectType(c.in[0], "src", DType::U8);
  c.expectSize(c.in[0], "src", mul(c, a.R, a.img), "(R,H,W,C)");
  a.idx = expectIndexBatch(c, c.in[1], a.B, a.R);
  c.expectType(c.in[2], "params", DType::I32);
  c.expectSize(c.in[2], "params", mul(c, a.B, 3), "(B,3)");
  c.expectType(c.out[0], "y", DType::F32);
  c.expectSize(c.out[0], "y", mul(c, a.B, a.N), "(B,OH,OW,C)");
  return a;
}

void checkCropParams(const KernelCall& c, const CropArgs& a, const int32_t* prm) {
  for (int64_t b = 0; b < a.B; ++b) {
    const int32_t dy = prm[3 * b], dx = prm[3 * b + 1], flip = prm[3 * b + 2];
    TL_KCHECK(c, dy >= 0 && dy <= a.H - a.OH && dx >= 0 && dx <= a.W - a.OW && (flip == 0 || flip == 1),
              "params at b=" << b << " are [dy=" << dy << ", dx=" << dx << ", flip=" << flip << "], expected dy in [0, "
                             << a.H - a.OH << "], dx in [0, " << a.W - a.OW << "], flip 0 or 1");
  }
}

// ---- convolution / pooling ----------------------------------------------------------------------------------------

bool spatialOut(int64_t in, int64_t k, int64_t s, bool same, int64_t* out, int64_t* padBefore) {
  if (same) {
    *out = (in + s - 1) / s;
    const int64_t total = (*out - 1) * s + k - in;
    *padBefore = *out > 0 && total > 0 ? total / 2 : 0;
    return true;
  }
  *padBefore = 0;
  if (in < k) return false;
  *out = (in - k) / s + 1;
  return true;
}

ConvGeom convGeom(const KernelCall& c) {
  ConvGeom g;
  g.B = dim(c, "B"); g.H = dim(c, "H"); g.W = dim(c, "W"); g.C = dim(c, "C");
  g.KH = dim(c, "KH"); g.KW = dim(c, "KW"); g.SH = dim(c, "SH"); g.SW = dim(c, "SW");
  g.OH = dim(c, "OH"); g.OW = dim(c, "OW");
  const double pad = attr(c, "padding");
  TL_KCHECK(c, pad == 0 || pad == 1, "attribute padding must be 0 (VALID) or 1 (SAME), got " << pad);
  g.same = pad == 1;
  TL_KCHECK(c, g.KH >= 1 && g.KW >= 1, "window KH=" << g.KH << " KW=" << g.KW << " must be at least 1x1");
  TL_KCHECK(c, g.SH >= 1 && g.SW >= 1, "strides SH=" << g.SH << " SW=" << g.SW << " must be at least 1");
  TL_KCHECK(c, g.H < (int64_t(1) << 31) && g.W < (int64_t(1) << 31) && g.KH < (int64_t(1) << 31) &&
                   g.KW < (int64_t(1) << 31) && g.SH < (int64_t(1) << 31) && g.SW < (int64_t(1) << 31),
            "spatial attributes must be below 2^31");
  const char* rule = g.same ? "SAME: ceil(in/stride)" : "VALID: (in - k)/stride + 1";
  int64_t oh = 0, ow = 0;
  TL_KCHECK(c, spatialOut(g.H, g.KH, g.SH, g.same, &oh, &g.padTop),
            "VALID padding needs H >= KH, got H=" << g.H << " KH=" << g.KH);
  TL_KCHECK(c, spatialOut(g.W, g.KW, g.SW, g.same, &ow, &g.padLeft),
            "VALID padding needs W >= KW, got W=" << g.W << " KW=" << g.KW);
  TL_KCHECK(c, g.OH == oh, "OH=" << g.OH << " does not match padding " << rule << " = " << oh);
  TL_KCHECK(c, g.OW == ow, "OW=" << g.OW << " does not match padding " << rule << " = " << ow);
  mul(c, mul(c, mul(c, g.B, g.H), g.W), g.C);
  mul(c, mul(c, mul(c, g.B, g.OH), g.OW), g.C);
  return g;
}

// The geometry, K, and the x (B,H,W,C) and w (KH,KW,C,K) buffers every conv2d kernel reads.
static ConvArgs convInputs(const KernelCall& c, bool readAccumulate, bool* acc) {
  ConvArgs a;
  a.g = convGeom(c);
  a.K = dim(c, "K");
  if (readAccumulate) *acc = flagAttr(c, "accumulate");
  const TensorRef &x = c.in[0], &w = c.in[1];
  c.expectType(x, "x", DType::F32);
  c.expectType(w, "w", DType::F32);
  c.expectSize(x, "x", a.g.inNumel(), "(B,H,W,C)");
  c.expectSize(w, "w", mul(c, mul(c, a.g.KH * a.g.KW, a.g.C), a.K), "(KH,KW,C,K)");
  a.M = a.g.outRows();
  a.kk = a.g.KH * a.g.KW * a.g.C;
  return a;
}

// K, KH·KW·C and B·OH·OW as GEMM (int) sizes.
static void convGemmDims(const KernelCall& c, ConvArgs& a) {
  a.iK = gemmDim(c, a.K, "K");
  a.iKK = gemmDim(c, a.kk, "KH*KW*C");
  gemmDim(c, a.M, "B*OH*OW");
}

ConvArgs conv2dForwardArgs(const KernelCall& c) {
  c.expectArity(3, 1, 1);
  ConvArgs a = convInputs(c, false, nullptr);
  expectF32(c, c.in[2], "b", a.K, "(K)");
  c.expectType(c.out[0], "y", DType::F32);
  c.expectSize(c.out[0], "y", mul(c, a.M, a.K), "(B,OH,OW,K)");
  convGemmDims(c, a);
  return a;
}

ConvBackwardArgs conv2dBackwardArgs(const KernelCall& c) {
  c.expectArity(3, 2, 3);
  ConvBackwardArgs a;
  static_cast<ConvArgs&>(a) = convInputs(c, true, &a.acc);
  c.expectType(c.in[2], "dy", DType::F32);
  c.expectSize(c.in[2], "dy", mul(c, a.M, a.K), "(B,OH,OW,K)");
  c.expectType(c.out[0], "dw", DType::F32);
  c.expectSize(c.out[0], "dw", mul(c, a.kk, a.K), "(KH,KW,C,K)");
  expectF32(c, c.out[1], "db", a.K, "(K)");
  a.wantDx = c.out.size() == 3;
  if (a.wantDx) expectF32(c, c.out[2], "dx", a.g.inNumel(), "(B,H,W,C)");
  convGemmDims(c, a);
  return a;
}

static PoolArgs poolGeom(const KernelCall& c) {
  PoolArgs a;
  a.g = convGeom(c);
  TL_KCHECK(c, a.g.inNumel() <= INT32_MAX, "B*H*W*C=" << a.g.inNumel() << " exceeds the i32 argmax range");
  a.nOut = a.g.outRows() * a.g.C;
  return a;
}

static void expectArgmax(const KernelCall& c, const TensorRef& am, int64_t nOut) {
  c.expectType(am, "argmax", DType::I32);
  c.expectSize(am, "argmax", nOut, "(B,OH,OW,C)");
}

PoolArgs maxpoolForwardArgs(const KernelCall& c) {
  c.expectArity(1, 2, 2);
  const PoolArgs a = poolGeom(c);
  expectF32(c, c.in[0], "x", a.g.inNumel(), "(B,H,W,C)");
  expectF32(c, c.out[0], "y", a.nOut, "(B,OH,OW,C)");
  expectArgmax(c, c.out[1], a.nOut);
  return a;
}

PoolArgs maxpoolBackwardArgs(const KernelCall& c) {
  c.expectArity(2, 1, 1);
  const PoolArgs a = poolGeom(c);
  expectF32(c, c.in[0], "dy", a.nOut, "(B,OH,OW,C)");
  expectArgmax(c, c.in[1], a.nOut);
  expectF32(c, c.out[0], "dx", a.g.inNumel(), "(B,H,W,C)");
  return a;
}

static LrnArgs lrnAttrs(const KernelCall& c) {
  LrnArgs p;
  p.N = dim(c, "N");
  p.C = dim(c, "C");
  p.r = dim(c, "depthRadius");
  p.bias = attr(c, "bias");
  p.alpha = attr(c, "alpha");
  p.beta = attr(c, "beta");
  TL_KCHECK(c, std::isfinite(p.bias) && std::isfinite(p.alpha) && std::isfinite(p.beta),
            "bias, alpha and beta must be finite");
  mul(c, p.N, p.C);
  p.n = p.N * p.C;
  return p;
}

LrnArgs lrnForwardArgs(const KernelCall& c) {
  c.expectArity(1, 2, 2);
  const LrnArgs p = lrnAttrs(c);
  expectF32(c, c.in[0], "x", p.n, "(N,C)");
  expectF32(c, c.out[0], "y", p.n, "(N,C)");
  expectF32(c, c.out[1], "scale", p.n, "(N,C)");
  return p;
}

LrnArgs lrnBackwardArgs(const KernelCall& c) {
  c.expectArity(4, 1, 1);
  const LrnArgs p = lrnAttrs(c);
  const char* names[4] = {"x", "y", "dy", "scale"};
  for (int k = 0; k < 4; ++k) expectF32(c, c.in[k], names[k], p.n, "(N,C)");
  expectF32(c, c.out[0], "dx", p.n, "(N,C)");
  return p;
}

DropoutArgs dropoutForwardArgs(const KernelCall& c, bool hostStep) {
  c.expectArity(2, 2, 2);
  DropoutArgs a;
  a.N = dim(c, "N");
  a.keepProb = attr(c, "keepProb");
  TL_KCHECK(c, a.keepProb > 0 && a.keepProb <= 1, "attribute keepProb must be in (0, 1], got " << a.keepProb);
  expectHyper(c, c.in[1]);
  a.step = 0;
  if (hostStep) {
    const float hstep = c.in[1].f32()[1];
    TL_KCHECK(c, std::isfinite(hstep) && hstep >= 0 && std::floor(hstep) == hstep,
              "hyper[1] (the step) must be a non-negative integer, got " << hstep);
    a.step = (uint64_t)hstep;
  }
  a.seed = (uint64_t)dim(c, "seed");
  TL_KCHECK(c, a.N <= (int64_t(1) << 32), "N=" << a.N << " exceeds the 2^32 elements the dropout hash counts");
  expectF32(c, c.in[0], "x", a.N);
  expectF32(c, c.out[0], "y", a.N);
  expectF32(c, c.out[1], "mask", a.N);
  return a;
}

int64_t dropoutBackwardArgs(const KernelCall& c) {
  c.expectArity(2, 1, 1);
  const int64_t N = dim(c, "N");
  expectF32(c, c.in[0], "dy", N);
  expectF32(c, c.in[1], "mask", N);
  expectF32(c, c.out[0], "dx", N);
  return N;
}

}  // namespace kargs
}  // namespace tl
