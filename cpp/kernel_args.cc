// The kernels' parse functions (Note [Kernel contracts]): the constraints between attributes and the sizes each
// kernel reads, run once at compile time after the generic checks of the attributes; and the value checks.
#include "kernel_args.h"

#include <sstream>

#include "kernel_contract.h"

namespace tl {
namespace kargs {

namespace {

// GEMM dimensions are int; reject attributes beyond that rather than truncating.
int gemmDim(const KernelCall& c, int64_t v, const char* name) {
  TL_KCHECK(c, v <= INT_MAX, "attribute " << name << "=" << v << " is too large for this backend (max " << INT_MAX << ")");
  return static_cast<int>(v);
}

template <class T>
std::unique_ptr<KernelArgs> done(T a) {
  return std::make_unique<T>(std::move(a));
}

// A backward kernel's arguments: its forward's sizes, the accumulate flag and whether the optional dx is given.
template <class Backward, class Forward>
std::unique_ptr<KernelArgs> backwardOf(const KernelCall& c, const Forward& forward) {
  Backward a;
  static_cast<Forward&>(a) = forward;
  a.acc = flagAttr(c, "accumulate");
  a.wantDx = c.out.size() == 3;
  return done(a);
}

// idx (B) i32 at input 1, indexing R rows.
IndexRange indexBatch(int64_t B, int64_t R) { return IndexRange{1, B, R, "index", "b", "R"}; }

DenseArgs denseDims(const KernelCall& c) {
  DenseArgs a;
  a.B = dim(c, "B"); a.I = dim(c, "I"); a.O = dim(c, "O");
  mul(c, a.B, a.I); mul(c, a.I, a.O); mul(c, a.B, a.O);
  a.iB = gemmDim(c, a.B, "B"); a.iI = gemmDim(c, a.I, "I"); a.iO = gemmDim(c, a.O, "O");
  return a;
}

}  // namespace

void failIndex(const KernelCall& c, const IndexRange& r, int64_t at, int32_t value) {
  std::ostringstream os;
  os << r.what << " at " << r.row << "=" << at << " is " << value << ", outside [0, " << r.range << "=" << r.limit
     << ")";
  c.fail(os.str(), __FILE__, __LINE__);
}

// ---- layers -------------------------------------------------------------------------------------------------------

std::unique_ptr<KernelArgs> parseDenseForward(const KernelCall& c) { return done(denseDims(c)); }

std::unique_ptr<KernelArgs> parseDenseBackward(const KernelCall& c) {
  auto a = backwardOf<DenseBackwardArgs>(c, denseDims(c));
  static_cast<DenseBackwardArgs&>(*a).wantDw = !flagAttr(c, "noWeightGrad");
  return a;
}

std::unique_ptr<KernelArgs> parseDenseGradNorm(const KernelCall& c) {
  DenseGradNormArgs a;
  static_cast<DenseArgs&>(a) = denseDims(c);
  a.N = dim(c, "N");
  a.at = dim(c, "at");
  a.lambda = attr(c, "lambda");
  TL_KCHECK(c, a.at + a.N <= a.I * a.O, "elements [at, at+N) = [" << a.at << ", " << a.at + a.N << ") must lie in the (I,O) = ("
                                                                   << a.I << "," << a.O << ") weight gradient");
  return done(a);
}

std::unique_ptr<KernelArgs> parseMatmul(const KernelCall& c) {
  MatmulArgs a;
  const int64_t M = dim(c, "M"), N = dim(c, "N"), K = dim(c, "K");
  mul(c, M, K); mul(c, K, N); mul(c, M, N);
  a.M = gemmDim(c, M, "M"); a.N = gemmDim(c, N, "N"); a.K = gemmDim(c, K, "K");
  a.transA = flagAttr(c, "transA");
  a.transB = flagAttr(c, "transB");
  return done(a);
}

std::unique_ptr<KernelArgs> parseSizeN(const KernelCall& c) {
  SizeArgs a;
  a.N = dim(c, "N");
  return done(a);
}

std::unique_ptr<KernelArgs> parseLabelled(const KernelCall& c) {
  LabelledArgs a;
  a.B = dim(c, "B"); a.C = dim(c, "C");
  mul(c, a.B, a.C);
  a.labels = IndexRange{1, a.B, a.C, "label", "row", "C"};
  return done(a);
}

std::unique_ptr<KernelArgs> parseMean(const KernelCall& c) {
  MeanArgs a;
  a.B = dim(c, "B"); a.C = dim(c, "C");
  TL_KCHECK(c, a.C > 0, "C must be positive (mean over zero features)");
  mul(c, a.B, a.C);
  return done(a);
}

// ---- elementwise, regularisation, norms, optimizers ---------------------------------------------------------------

std::unique_ptr<KernelArgs> parseElementwise(const KernelCall& c) {
  ElementwiseArgs a;
  a.N = dim(c, "N");
  const KernelContract* k = findContract(c.op);
  if (k)
    for (const AttrSpec& s : k->attrs)
      if (s.kind == AttrKind::Number) a.coef = attr(c, s.name);
  return done(a);
}

std::unique_ptr<KernelArgs> parseMomentum(const KernelCall& c) {
  MomentumArgs a;
  a.N = dim(c, "N");
  a.momentum = (float)attr(c, "momentum");
  a.nesterov = flagAttr(c, "nesterov");
  return done(a);
}

std::unique_ptr<KernelArgs> parseAdam(const KernelCall& c) {
  AdamArgs a;
  a.N = dim(c, "N");
  a.beta1 = attr(c, "beta1"); a.beta2 = attr(c, "beta2"); a.epsilon = attr(c, "epsilon");
  return done(a);
}

std::unique_ptr<KernelArgs> parseEma(const KernelCall& c) {
  EmaArgs a;
  a.N = dim(c, "N");
  a.decay = attr(c, "decay");
  return done(a);
}

// clipNorm >= 0 (0: no clipping); decay in (0, 1) with the shadow output (the one past `outputs`), unread without.
static TailArgs tailArgs(const KernelCall& c, size_t outputs) {
  TailArgs t;
  t.clipNorm = attr(c, "clipNorm");
  t.decay = attr(c, "decay");
  t.ema = c.out.size() > outputs;
  TL_KCHECK(c, t.clipNorm >= 0 && std::isfinite(t.clipNorm),
            "attribute clipNorm must be a finite number >= 0 (0: no clipping), got " << t.clipNorm);
  if (t.ema)
    TL_KCHECK(c, t.decay > 0 && t.decay < 1, "attribute decay must be in (0, 1) with a shadow output, got " << t.decay);
  return t;
}

std::unique_ptr<KernelArgs> parseFusedSgd(const KernelCall& c) {
  FusedSgdArgs a;
  a.N = dim(c, "N");
  a.tail = tailArgs(c, 2);
  return done(a);
}

std::unique_ptr<KernelArgs> parseFusedMomentum(const KernelCall& c) {
  FusedMomentumArgs a;
  static_cast<MomentumArgs&>(a) = static_cast<const MomentumArgs&>(*parseMomentum(c));
  a.tail = tailArgs(c, 3);
  return done(a);
}

std::unique_ptr<KernelArgs> parseFusedAdam(const KernelCall& c) {
  FusedAdamArgs a;
  static_cast<AdamArgs&>(a) = static_cast<const AdamArgs&>(*parseAdam(c));
  a.tail = tailArgs(c, 4);
  return done(a);
}

// ---- input --------------------------------------------------------------------------------------------------------

static GatherRowsArgs gatherRows(const KernelCall& c) {
  GatherRowsArgs a;
  a.B = dim(c, "B"); a.D = dim(c, "D"); a.R = dim(c, "R");
  a.idx = indexBatch(a.B, a.R);
  return a;
}

std::unique_ptr<KernelArgs> parseGatherRowsU8(const KernelCall& c) {
  GatherRowsArgs a = gatherRows(c);
  a.scale = (float)attr(c, "scale");
  return done(a);
}

std::unique_ptr<KernelArgs> parseGatherRowsF32(const KernelCall& c) { return done(gatherRows(c)); }

std::unique_ptr<KernelArgs> parseGatherLabels(const KernelCall& c) {
  GatherLabelsArgs a;
  a.B = dim(c, "B"); a.R = dim(c, "R");
  a.idx = indexBatch(a.B, a.R);
  return done(a);
}

std::unique_ptr<KernelArgs> parseCrop(const KernelCall& c) {
  CropArgs a;
  a.B = dim(c, "B"); a.R = dim(c, "R"); a.H = dim(c, "H"); a.W = dim(c, "W"); a.C = dim(c, "C");
  a.OH = dim(c, "OH"); a.OW = dim(c, "OW");
  TL_KCHECK(c, a.OH >= 1 && a.OW >= 1 && a.OH <= a.H && a.OW <= a.W,
            "crop OH=" << a.OH << " OW=" << a.OW << " must be at least 1x1 and fit the image H=" << a.H
                       << " W=" << a.W);
  a.img = mul(c, mul(c, a.H, a.W), a.C);
  a.N = mul(c, mul(c, a.OH, a.OW), a.C);
  a.idx = indexBatch(a.B, a.R);
  return done(a);
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

// Reads B,H,W,C,KH,KW,SH,SW,padding,OH,OW and checks OH/OW against the padding rule.
static ConvGeom convGeom(const KernelCall& c) {
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

// The geometry, K, M = B·OH·OW, kk = KH·KW·C and their GEMM (int) sizes.
static ConvArgs convDims(const KernelCall& c) {
  ConvArgs a;
  a.g = convGeom(c);
  a.K = dim(c, "K");
  a.M = a.g.outRows();
  a.kk = mul(c, a.g.KH * a.g.KW, a.g.C);
  mul(c, a.kk, a.K);
  mul(c, a.M, a.K);
  a.iK = gemmDim(c, a.K, "K");
  a.iKK = gemmDim(c, a.kk, "KH*KW*C");
  gemmDim(c, a.M, "B*OH*OW");
  return a;
}

std::unique_ptr<KernelArgs> parseConvForward(const KernelCall& c) { return done(convDims(c)); }

std::unique_ptr<KernelArgs> parseConvBackward(const KernelCall& c) { return backwardOf<ConvBackwardArgs>(c, convDims(c)); }

std::unique_ptr<KernelArgs> parsePool(const KernelCall& c) {
  PoolArgs a;
  a.g = convGeom(c);
  TL_KCHECK(c, a.g.inNumel() <= INT32_MAX, "B*H*W*C=" << a.g.inNumel() << " exceeds the i32 argmax range");
  a.nOut = a.g.outRows() * a.g.C;
  return done(a);
}

std::unique_ptr<KernelArgs> parseLrn(const KernelCall& c) {
  LrnArgs p;
  p.N = dim(c, "N");
  p.C = dim(c, "C");
  p.r = dim(c, "depthRadius");
  p.bias = attr(c, "bias");
  p.alpha = attr(c, "alpha");
  p.beta = attr(c, "beta");
  TL_KCHECK(c, std::isfinite(p.bias) && std::isfinite(p.alpha) && std::isfinite(p.beta),
            "bias, alpha and beta must be finite");
  p.n = mul(c, p.N, p.C);
  return done(p);
}

std::unique_ptr<KernelArgs> parseDropout(const KernelCall& c) {
  DropoutArgs a;
  a.N = dim(c, "N");
  a.keepProb = attr(c, "keepProb");
  TL_KCHECK(c, a.keepProb > 0 && a.keepProb <= 1, "attribute keepProb must be in (0, 1], got " << a.keepProb);
  a.seed = (uint64_t)dim(c, "seed");
  TL_KCHECK(c, a.N <= (int64_t(1) << 32), "N=" << a.N << " exceeds the 2^32 elements the dropout hash counts");
  return done(a);
}

uint64_t dropoutStep(const KernelCall& c, const float* hyper) {
  const float hstep = hyper[kHyperStep];
  TL_KCHECK(c, std::isfinite(hstep) && hstep >= 0 && std::floor(hstep) == hstep,
            "hyper[" << kHyperStep << "] (the step) must be a non-negative integer, got " << hstep);
  return (uint64_t)hstep;
}

}  // namespace kargs
}  // namespace tl
