// What each kernel reads at run time, parsed once when its program is compiled (Note [Kernel contracts]), and the
// few checks that depend on values and so stay in the kernels (label/index ranges, crop parameters, the step).
#pragma once
#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>

#include "hyper.h"
#include "kernel.h"

namespace tl {
namespace kargs {

// Note [Shared kernel argument checks]: the CPU and CUDA kernels share these structs and the parse functions that
// fill them (kernel_args.cc, called by the contract check at compile time), so both backends reject bad calls with
// the same words and read the same sizes. What stays in the backends is what they do differently: the label/index
// value scans (a host loop on the CPU, a device scan plus a stream sync on CUDA) and backend limits (grid sizes).

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
// Attribute `name` must be 0 or 1 (default 0).
inline bool flagAttr(const KernelCall& c, const char* name) {
  const double v = attr(c, name, 0);
  TL_KCHECK(c, v == 0 || v == 1, "attribute " << name << " must be 0 or 1, got " << v);
  return v == 1;
}

// a*b for shape products; throws instead of overflowing on absurd attributes.
inline int64_t mul(const KernelCall& c, int64_t a, int64_t b) {
  TL_KCHECK(c, b == 0 || a <= INT64_MAX / b, "shape product " << a << " x " << b << " overflows");
  return a * b;
}

// ---- label / index ranges -----------------------------------------------------------------------------------------

// An i32 input whose n values must lie in [0, limit) before any output is written. The backend scans the values
// (the CPU on the host, CUDA on the device) and reports the first bad one through failIndex.
struct IndexRange {
  int input = 0;  // which input buffer holds the values
  int64_t n = 0, limit = 0;
  const char* what = "";   // "label", "index"
  const char* row = "";    // what a position is called: "row", "b"
  const char* range = "";  // the limit's attribute: "C", "R"
  const int32_t* values(const KernelCall& c) const { return c.in[input].i32(); }
};

// "<what> at <row>=<at> is <value>, outside [0, <range>=<limit>)", prefixed like every kernel error.
[[noreturn]] void failIndex(const KernelCall& c, const IndexRange& r, int64_t at, int32_t value);

// ---- layers -------------------------------------------------------------------------------------------------------

// dense_forward: in x (B,I), W (I,O), b (O); out y (B,O). iB, iI, iO: the GEMM (int) sizes.
struct DenseArgs : KernelArgs {
  int64_t B = 0, I = 0, O = 0;
  int iB = 0, iI = 0, iO = 0;
};
// dense_backward: in x (B,I), W (I,O), dy (B,O); out dW (I,O), db (O) [, dx (B,I)].
struct DenseBackwardArgs : DenseArgs {
  bool acc = false;     // attribute accumulate = 1: dW and db are added to, not overwritten
  bool wantDx = false;  // the optional dx output is present
  bool wantDw = true;   // attribute noWeightGrad = 1: dW is left as it is (another kernel forms it)
};
// dense_grad_norm: in w (N), x0 (B,I), dy0 (B,O), n0 (1), x1 (B,I), dy1 (B,O), n1 (1); out g (N), s (1), loss (1).
// Elements [at, at+N) of the (I,O) weight gradient; the row counts n0, n1 are read when it runs (at most B).
struct DenseGradNormArgs : DenseArgs {
  int64_t N = 0, at = 0;
  double lambda = 0;
};

// matmul: in A (M,K), B (K,N) (stored transposed under transA/transB); out C (M,N). All fit a GEMM int.
struct MatmulArgs : KernelArgs {
  int M = 0, N = 0, K = 0;
  bool transA = false, transB = false;
};

// One length N: activations, sgd_update, dropout_backward, hash_bits.
struct SizeArgs : KernelArgs {
  int64_t N = 0;
};

// A (B,C) matrix with labels (B), input 1.
struct LabelledArgs : KernelArgs {
  int64_t B = 0, C = 0;
  IndexRange labels;
};
struct MeanArgs : KernelArgs {
  int64_t B = 0, C = 0;
};

// ---- elementwise, regularisation, norms, optimizers ---------------------------------------------------------------

// N and the kernel's one numeric attribute (0 for sum_squares and copy, which have none).
struct ElementwiseArgs : KernelArgs {
  int64_t N = 0;
  double coef = 0;
};
struct MomentumArgs : KernelArgs {
  int64_t N = 0;
  float momentum = 0;
  bool nesterov = false;
};
struct AdamArgs : KernelArgs {
  int64_t N = 0;
  double beta1 = 0, beta2 = 0, epsilon = 0;
};
struct EmaArgs : KernelArgs {
  int64_t N = 0;
  double decay = 0;
};
// What a fused_*_update adds to its update: the clip norm (0: no clipping) and the EMA (with its optional shadow
// output; decay is not read without one).
struct TailArgs {
  double clipNorm = 0, decay = 0;
  bool ema = false;
};
struct FusedSgdArgs : SizeArgs {
  TailArgs tail;
};
struct FusedMomentumArgs : MomentumArgs {
  TailArgs tail;
};
struct FusedAdamArgs : AdamArgs {
  TailArgs tail;
};

// ---- input --------------------------------------------------------------------------------------------------------

// gather_rows_u8 / gather_rows_f32: in src (R,D), idx (B) i32; out y (B,D) f32.
struct GatherRowsArgs : KernelArgs {
  int64_t B = 0, D = 0, R = 0;
  float scale = 1.f;  // gather_rows_u8's attribute; 1 for gather_rows_f32
  IndexRange idx;
};
// gather_labels_u8: in src (R) u8, idx (B) i32; out y (B) i32.
struct GatherLabelsArgs : KernelArgs {
  int64_t B = 0, R = 0;
  IndexRange idx;
};
// crop_flip_standardize_u8: in src (R,H,W,C) u8, idx (B) i32, params (B,3) i32 [dy, dx, flip]; out y (B,OH,OW,C).
struct CropArgs : KernelArgs {
  int64_t B = 0, R = 0, H = 0, W = 0, C = 0, OH = 0, OW = 0;
  int64_t img = 0, N = 0;  // H·W·C and OH·OW·C
  IndexRange idx;
};
// The per-image params, from host memory (CUDA reads them back first): dy in [0, H−OH], dx in [0, W−OW], flip 0/1.
void checkCropParams(const KernelCall& c, const CropArgs& a, const int32_t* params);

// ---- convolution / pooling geometry (NHWC) ------------------------------------------------------------------------

// One spatial dimension. padding 0 = VALID: out = ceil((in − k + 1)/s), needs in >= k, no padding. padding 1 = SAME
// (TF's rule): out = ceil(in/s), padTotal = max((out − 1)·s + k − in, 0), padBefore = floor(padTotal/2).
// Returns false (VALID with in < k) when no output size exists.
bool spatialOut(int64_t in, int64_t k, int64_t s, bool same, int64_t* out, int64_t* padBefore);

struct ConvGeom {
  int64_t B = 0, H = 0, W = 0, C = 0, KH = 0, KW = 0, SH = 0, SW = 0, OH = 0, OW = 0, padTop = 0, padLeft = 0;
  bool same = false;
  int64_t inNumel() const { return B * H * W * C; }
  int64_t outRows() const { return B * OH * OW; }  // output positions (b, oh, ow)
};

// conv2d_forward: in x (B,H,W,C), w (KH,KW,C,K), b (K); out y (B,OH,OW,K). M = B·OH·OW, kk = KH·KW·C.
struct ConvArgs : KernelArgs {
  ConvGeom g;
  int64_t K = 0, M = 0, kk = 0;
  int iK = 0, iKK = 0;  // K and kk as GEMM (int) sizes; M is checked to fit an int too
};
// conv2d_backward: in x, w, dy (B,OH,OW,K); out dw (KH,KW,C,K), db (K) [, dx (B,H,W,C)].
struct ConvBackwardArgs : ConvArgs {
  bool acc = false, wantDx = false;  // as DenseBackwardArgs
};
// maxpool_forward: in x (B,H,W,C); out y, argmax (B,OH,OW,C). maxpool_backward: in dy, argmax; out dx (B,H,W,C).
// Every flat input index fits the i32 argmax.
struct PoolArgs : KernelArgs {
  ConvGeom g;
  int64_t nOut = 0;  // B·OH·OW·C
};
// lrn_forward: in x (N,C); out y, scale (N,C). lrn_backward: in x, y, dy, scale (N,C); out dx (N,C).
struct LrnArgs : KernelArgs {
  int64_t N = 0, C = 0, r = 0;  // r: depthRadius
  double bias = 0, alpha = 0, beta = 0;
  int64_t n = 0;  // N·C
};
// dropout_forward: in x (N), hyper; out y (N), mask (N).
struct DropoutArgs : KernelArgs {
  int64_t N = 0;
  double keepProb = 1;
  uint64_t seed = 0;
};
// The step of dropout_forward from a host-memory hyper block (the CPU): hyper[kHyperStep], a non-negative integer.
// CUDA reads the step on the device instead (not range-checked there).
uint64_t dropoutStep(const KernelCall& c, const float* hyper);

// ---- parse functions (the contract table's; kernel_args.cc) -------------------------------------------------------

std::unique_ptr<KernelArgs> parseDenseForward(const KernelCall& c);
std::unique_ptr<KernelArgs> parseDenseBackward(const KernelCall& c);
std::unique_ptr<KernelArgs> parseDenseGradNorm(const KernelCall& c);
std::unique_ptr<KernelArgs> parseMatmul(const KernelCall& c);
std::unique_ptr<KernelArgs> parseSizeN(const KernelCall& c);
std::unique_ptr<KernelArgs> parseLabelled(const KernelCall& c);
std::unique_ptr<KernelArgs> parseMean(const KernelCall& c);
// N and the kernel's one Number attribute as declared in its contract (coef = 0 when it has none).
std::unique_ptr<KernelArgs> parseElementwise(const KernelCall& c);
std::unique_ptr<KernelArgs> parseMomentum(const KernelCall& c);
std::unique_ptr<KernelArgs> parseAdam(const KernelCall& c);
std::unique_ptr<KernelArgs> parseEma(const KernelCall& c);
std::unique_ptr<KernelArgs> parseFusedSgd(const KernelCall& c);
std::unique_ptr<KernelArgs> parseFusedMomentum(const KernelCall& c);
std::unique_ptr<KernelArgs> parseFusedAdam(const KernelCall& c);
std::unique_ptr<KernelArgs> parseGatherRowsU8(const KernelCall& c);
std::unique_ptr<KernelArgs> parseGatherRowsF32(const KernelCall& c);
std::unique_ptr<KernelArgs> parseGatherLabels(const KernelCall& c);
std::unique_ptr<KernelArgs> parseCrop(const KernelCall& c);
std::unique_ptr<KernelArgs> parseConvForward(const KernelCall& c);
std::unique_ptr<KernelArgs> parseConvBackward(const KernelCall& c);
std::unique_ptr<KernelArgs> parsePool(const KernelCall& c);
std::unique_ptr<KernelArgs> parseLrn(const KernelCall& c);
std::unique_ptr<KernelArgs> parseDropout(const KernelCall& c);

}  // namespace kargs
}  // namespace tl
