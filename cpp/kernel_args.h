// Kernel argument checks shared by the CPU and CUDA backends: one function per kernel, returning the parsed sizes.
#pragma once
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernel.h"

namespace tl {
namespace kargs {

// Note [Shared kernel argument checks]: every kernel of every backend starts with the function named after it here
// (dense_backward -> denseBackwardArgs). It checks the arity, the attributes and each buffer's dtype and size in one
// fixed order and throws through TL_KCHECK (the op, the device and the attributes prefix the message), so both
// backends reject bad calls with the same words. What stays in the backends is what they do differently: the
// label/index value scans (a host loop on the CPU, a device scan plus a stream sync on CUDA) and backend limits
// (grid sizes). The contract the checks enforce is docs/kernels.md.

// Attribute reads that, unlike Attrs::get/dim, prefix errors with the op and device (TL_KCHECK context).
inline double attr(const KernelCall& c, const char* k) {
  TL_KCHECK(c, c.attrs.has(k), "missing attribute '" << k << "'; pass it in the op's attrs");
  return c.attrs.get(k);
}
inline double attr(const KernelCall& c, const char* k, double dflt) { return c.attrs.get(k, dflt); }
inline int64_t dim(const KernelCall& c, const char* k) {
  const double v = attr(c, k);
  TL_KCHECK(c, std::isfinite(v) && v >= 0 && std::floor(v) == v && v < 9.0e15,
            "attribute '" << k << "' must be a non-negative integer, got " << v);
  return static_cast<int64_t>(v);
}

// a*b for shape products; throws instead of overflowing on absurd attributes.
inline int64_t mul(const KernelCall& c, int64_t a, int64_t b) {
  TL_KCHECK(c, b == 0 || a <= INT64_MAX / b, "shape product " << a << " x " << b << " overflows");
  return a * b;
}

// GEMM dimensions are int; reject attributes beyond that rather than truncating.
inline int gemmDim(const KernelCall& c, int64_t v, const char* name) {
  TL_KCHECK(c, v <= INT_MAX, "attribute " << name << "=" << v << " is too large for this backend (max " << INT_MAX << ")");
  return static_cast<int>(v);
}

// hyper holds [lr, t, shard weight]; every kernel reading it requires all 3 slots.
constexpr int64_t kHyperSlots = 3;
inline void expectHyper(const KernelCall& c, const TensorRef& h) {
  c.expectType(h, "hyper", DType::F32);
  c.expectSize(h, "hyper", kHyperSlots, "(3)");
}

// ---- label / index ranges -----------------------------------------------------------------------------------------

// An i32 buffer whose n values must lie in [0, limit) before any output is written. The backend scans the values
// (the CPU on the host, CUDA on the device) and reports the first bad one through failIndex.
struct IndexRange {
  const int32_t* idx;  // host or device memory, as the backend keeps it
  int64_t n, limit;
  const char* what;   // "label", "index"
  const char* row;    // what a position is called: "row", "b"
  const char* range;  // the limit's attribute: "C", "R"
};

// "<what> at <row>=<at> is <value>, outside [0, <range>=<limit>)", prefixed like every kernel error.
[[noreturn]] void failIndex(const KernelCall& c, const IndexRange& r, int64_t at, int32_t value);

// ---- layers -------------------------------------------------------------------------------------------------------

// dense_forward: in x (B,I), W (I,O), b (O); out y (B,O). iB, iI, iO: the GEMM (int) sizes.
struct DenseArgs {
  int64_t B, I, O;
  int iB, iI, iO;
};
DenseArgs denseForwardArgs(const KernelCall& c);

// dense_backward: in x (B,I), W (I,O), dy (B,O); out dW (I,O), db (O) [, dx (B,I)].
struct DenseBackwardArgs : DenseArgs {
  bool acc;     // attribute accumulate = 1: dW and db are added to, not overwritten
  bool wantDx;  // the optional dx output is present
};
DenseBackwardArgs denseBackwardArgs(const KernelCall& c);

// Activations (relu, sigmoid, tanh). Forward: in x (N); out y (N). Backward: in y (N), dy (N); out dx (N). Return N.
int64_t activationForwardArgs(const KernelCall& c);
int64_t activationBackwardArgs(const KernelCall& c);

// A (B,C) matrix with labels (B); labels.idx points at the labels buffer, values not yet scanned.
struct LabelledArgs {
  int64_t B, C;
  IndexRange labels;
};
LabelledArgs softmaxXentForwardArgs(const KernelCall& c);   // in logits, labels, hyper; out loss (1), probs (B,C)
LabelledArgs softmaxXentBackwardArgs(const KernelCall& c);  // in probs, labels, hyper; out dlogits (B,C)
LabelledArgs accuracyCountArgs(const KernelCall& c);        // in logits, labels; out count (1)

struct MeanArgs {
  int64_t B, C;
};
MeanArgs meanForwardArgs(const KernelCall& c);   // in x (B,C), hyper; out loss (1)
MeanArgs meanBackwardArgs(const KernelCall& c);  // in hyper; out dx (B,C)

// ---- elementwise, regularisation, norms ---------------------------------------------------------------------------

// N and the kernel's one numeric attribute (0 for sum_squares and copy, which have none).
struct ElementwiseArgs {
  int64_t N;
  double coef;
};
ElementwiseArgs l2LossArgs(const KernelCall& c);      // in w (N); out loss (1); coef = lambda
ElementwiseArgs l2BackwardArgs(const KernelCall& c);  // in w (N); out g (N); coef = lambda
ElementwiseArgs sumSquaresArgs(const KernelCall& c);  // in x (N); out s (1)
ElementwiseArgs clipByNormArgs(const KernelCall& c);  // in s (1); out g (N); coef = clipNorm
ElementwiseArgs fillArgs(const KernelCall& c);        // out x (N); coef = value
ElementwiseArgs scaleArgs(const KernelCall& c);       // out x (N); coef = factor
ElementwiseArgs axpyArgs(const KernelCall& c);        // in x (N); out y (N); coef = alpha
ElementwiseArgs copyArgs(const KernelCall& c);        // in x (N); out y (N)

// ---- optimizers ---------------------------------------------------------------------------------------------------

int64_t sgdUpdateArgs(const KernelCall& c);  // in g (N), hyper; out w (N). Returns N.

struct MomentumArgs {
  int64_t N;
  float momentum;
  bool nesterov;
};
MomentumArgs momentumUpdateArgs(const KernelCall& c);  // in g (N), hyper; out w (N), v (N)

struct AdamArgs {
  int64_t N;
  double beta1, beta2, epsilon;
};
AdamArgs adamUpdateArgs(const KernelCall& c);  // in g (N), hyper; out w (N), m (N), v (N)

struct EmaArgs {
  int64_t N;
  double decay;
};
EmaArgs emaUpdateArgs(const KernelCall& c);  // in w (N); out shadow (N)

// ---- input --------------------------------------------------------------------------------------------------------

// gather_rows_u8 / gather_rows_f32: in src (R,D) of srcType, idx (B) i32; out y (B,D) f32.
struct GatherRowsArgs {
  int64_t B, D, R;
  float scale;  // read only when asked (gather_rows_u8), else 1
  IndexRange idx;
};
// readScale: read attribute scale right after the dimensions, before the buffer checks (the CPU kernel's order;
// the CUDA kernel reads it itself after this returns, as it always has).
GatherRowsArgs gatherRowsArgs(const KernelCall& c, DType srcType, bool readScale);

// gather_labels_u8: in src (R) u8, idx (B) i32; out y (B) i32.
struct GatherLabelsArgs {
  int64_t B, R;
  IndexRange idx;
};
GatherLabelsArgs gatherLabelsArgs(const KernelCall& c);

// crop_flip_standardize_u8: in src (R,H,W,C) u8, idx (B) i32, params (B,3) i32 [dy, dx, flip]; out y (B,OH,OW,C).
struct CropArgs {
  int64_t B, R, H, W, C, OH, OW;
  int64_t img, N;  // H·W·C and OH·OW·C
  IndexRange idx;
};
CropArgs cropFlipStandardizeArgs(const KernelCall& c);
// The per-image params, from host memory (CUDA reads them back first): dy in [0, H−OH], dx in [0, W−OW], flip 0/1.
void checkCropParams(const KernelCall& c, const CropArgs& a, const int32_t* params);

// ---- convolution / pooling geometry (NHWC) ------------------------------------------------------------------------

// One spatial dimension. padding 0 = VALID: out = ceil((in − k + 1)/s), needs in >= k, no padding. padding 1 = SAME
// (TF's rule): out = ceil(in/s), padTotal = max((out − 1)·s + k − in, 0), padBefore = floor(padTotal/2).
// Returns false (VALID with in < k) when no output size exists.
bool spatialOut(int64_t in, int64_t k, int64_t s, bool same, int64_t* out, int64_t* padBefore);

struct ConvGeom {
  int64_t B, H, W, C, KH, KW, SH, SW, OH, OW, padTop, padLeft;
  bool same;
  int64_t inNumel() const { return B * H * W * C; }
  int64_t outRows() const { return B * OH * OW; }  // output positions (b, oh, ow)
};

// Reads B,H,W,C,KH,KW,SH,SW,padding,OH,OW and checks OH/OW against the padding rule.
ConvGeom convGeom(const KernelCall& c);

// conv2d_forward: in x (B,H,W,C), w (KH,KW,C,K), b (K); out y (B,OH,OW,K). M = B·OH·OW, kk = KH·KW·C.
struct ConvArgs {
  ConvGeom g;
  int64_t K, M, kk;
  int iK, iKK;  // K and kk as GEMM (int) sizes; M is checked to fit an int too
};
ConvArgs conv2dForwardArgs(const KernelCall& c);

// conv2d_backward: in x, w, dy (B,OH,OW,K); out dw (KH,KW,C,K), db (K) [, dx (B,H,W,C)].
struct ConvBackwardArgs : ConvArgs {
  bool acc, wantDx;  // as DenseBackwardArgs
};
ConvBackwardArgs conv2dBackwardArgs(const KernelCall& c);

// maxpool_forward: in x (B,H,W,C); out y, argmax (B,OH,OW,C). maxpool_backward: in dy, argmax; out dx (B,H,W,C).
// Every flat input index fits the i32 argmax.
struct PoolArgs {
  ConvGeom g;
  int64_t nOut;  // B·OH·OW·C
};
PoolArgs maxpoolForwardArgs(const KernelCall& c);
PoolArgs maxpoolBackwardArgs(const KernelCall& c);

// lrn_forward: in x (N,C); out y, scale (N,C). lrn_backward: in x, y, dy, scale (N,C); out dx (N,C).
struct LrnArgs {
  int64_t N, C, r;  // r: depthRadius
  double bias, alpha, beta;
  int64_t n;        // N·C
};
LrnArgs lrnForwardArgs(const KernelCall& c);
LrnArgs lrnBackwardArgs(const KernelCall& c);

// dropout_forward: in x (N), hyper; out y (N), mask (N).
struct DropoutArgs {
  int64_t N;
  double keepProb;
  uint64_t seed;
  uint64_t step;  // hyper[1], when read on the host; else 0
};
// hostStep: hyper is host memory; read hyper[1] (the step) and check it is a non-negative integer. CUDA reads the
// step on the device instead (not range-checked there).
DropoutArgs dropoutForwardArgs(const KernelCall& c, bool hostStep);
int64_t dropoutBackwardArgs(const KernelCall& c);  // in dy (N), mask (N); out dx (N). Returns N.

}  // namespace kargs
}  // namespace tl
