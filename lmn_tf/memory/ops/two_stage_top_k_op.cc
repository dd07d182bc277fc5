// LmnTwoStageTopK: the exact product-key top-K of lmn_tf.memory.scoring.two_stage_top_k.
//
// For each of the N leading positions, slot (i, j) of an m x m memory has score
// s_row[i] + s_col[j] and id i*m + j. The op returns the K best slots under the tie rule of
// the stock path: higher score first, lower slot id first on equal scores.
//
// Stage 1, per axis: the K best of m scores by a running threshold. The first K scores seed
// a buffer; a score is only looked at individually when its block of 16 holds one above
// the K-th best so far (a branch-free compare over the block, which the compiler
// vectorises); survivors are appended and the buffer is cut back to K with nth_element
// whenever it reaches 2K. Random scores thus cost about m compares plus O(K log(m/K))
// buffer work instead of a heap update per score.
//
// Stage 2: the pair of the a-th best row and the b-th best column (0-based) is beaten by
// every pair (a' <= a, b' <= b), so only the ~K ln K pairs with (a+1)(b+1) <= K can win.
// Those candidates are ranked exactly as the stock path ranks them (one 64-bit key: the
// float sum's order bits, then the inverted slot id) and cut to K with nth_element. A
// priority-queue frontier merge over the same pairs would pop fewer candidates, but it
// relies on a pair never outranking its parent, which float rounding breaks (two distinct
// column scores can give equal sums, and then the slot ids decide); the stock path ranks
// all candidates, so this does too and the two agree slot for slot.
//
// NaN policy: a NaN score ranks below every number (-inf included), in both stages; among
// NaNs the lower slot id comes first. The stock path's order for NaN is unspecified (TF's
// TopK makes no promise), so the two are only compared on NaN-free inputs. The layer never
// feeds NaN from real items; padded items may, and their read-out is masked afterwards.
// -0.0 and +0.0 are equal, as in float comparison.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"

namespace lmn_tf {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

constexpr int kBlock = 16;

// Unsigned key whose order is the float order (NaN lowest, -0.0 == +0.0).
inline uint32_t OrderBits(float x) {
  if (x != x) return 0;    // NaN: below -inf, whose key is 0x007FFFFF
  if (x == 0.0f) x = 0.0f;  // -0.0 -> +0.0
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Descending order of the packed key is (score descending, id ascending).
inline uint64_t Pack(float score, uint32_t id) {
  return (static_cast<uint64_t>(OrderBits(score)) << 32) | (0xFFFFFFFFu - id);
}

inline uint32_t IdOf(uint64_t key) { return 0xFFFFFFFFu - static_cast<uint32_t>(key); }

constexpr int kSmall = 4;  // up to kSmall*k scores per axis are selected without a threshold

// The k largest of keys[0..n) into out[0..k), largest first (keys is reordered).
inline void SortBest(uint64_t* keys, int n, int k, uint64_t* out) {
  if (n > k) std::nth_element(keys, keys + k - 1, keys + n, std::greater<uint64_t>());
  std::sort(keys, keys + k, std::greater<uint64_t>());
  std::copy(keys, keys + k, out);
}

// True if some x[i..i+kBlock) is >= thr; branch-free so that it vectorises.
inline bool AnyReaching(const float* x, float thr) {
  int hit = 0;
  for (int j = 0; j < kBlock; ++j) hit |= x[j] >= thr;
  return hit != 0;
}

// A score t that at least k of x[0..m) reach (so the k-th best is >= t), or -inf if none is
// found. Deal x into 2k disjoint strided sets (column c: x[c], x[c + 2k], ...; needs
// m >= 2k): the k-th largest set maximum is such a t, as k distinct sets each hold an
// element >= t. Column-wise maxima are an element-wise select over rows of 2k scores, which
// the compiler vectorises (a max over one contiguous block would be a serial reduction).
// For random scores t lies close below the k-th best, so the scan looks at few scores.
float LowerBound(const float* x, int m, int k, float* maxima) {
  const int width = 2 * k;
  const int rows = m / width;  // the tail, if any, is left out
  for (int c = 0; c < width; ++c) maxima[c] = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < rows; ++r) {
    const float* row = x + r * width;
    for (int c = 0; c < width; ++c) maxima[c] = row[c] > maxima[c] ? row[c] : maxima[c];
  }
  if (rows == 0) return -std::numeric_limits<float>::infinity();
  std::nth_element(maxima, maxima + k - 1, maxima + width, std::greater<float>());
  // A maximum of -inf may come from a set of NaNs (NaN never wins a compare), which reach no
  // number: the caller then scans without a bound.
  return maxima[k - 1];
}

// The k best of x[0..m) into out[0..k), best first, as packed keys. buf: scratch, >= 2k
// entries; maxima: scratch, >= 2k floats.
void AxisTopK(const float* x, int m, int k, uint64_t* buf, float* maxima, uint64_t* out) {
  if (m <= kSmall * k) {  // few scores: a threshold would let most through, so select all
    for (int j = 0; j < m; ++j) buf[j] = Pack(x[j], j);
    SortBest(buf, m, k, out);
    return;
  }
  int n = 0;
  uint64_t kth = 0;  // packed key a score must beat to enter; 0: every score enters
  // The float filter ">= thr" only has to let every score that can enter through (the
  // packed compare decides): thr is the lower bound t, then the k-th best so far. No
  // nextafter tricks: TF runs kernels with denormals flushed to zero, so a threshold one ulp
  // below 0.0f would compare as 0.0f.
  float thr = -std::numeric_limits<float>::infinity();
  bool filter = false;  // false: no float filter (no bound; NaNs may be among the k best)
  int i = 0;
  const float bound = LowerBound(x, m, k, maxima);
  if (bound > -std::numeric_limits<float>::infinity()) {
    thr = bound;
    filter = true;
  }
  auto push = [&](int j) {
    const uint64_t key = Pack(x[j], j);
    if (key <= kth) return;
    buf[n++] = key;
    if (n == 2 * k) {  // cut back to the k best; the k-th best is the new bar
      std::nth_element(buf, buf + k - 1, buf + n, std::greater<uint64_t>());
      n = k;
      kth = buf[k - 1];
      if (static_cast<uint32_t>(kth >> 32) != 0) {  // a number (not NaN): filter above it
        const uint32_t bits = static_cast<uint32_t>(kth >> 32);
        const uint32_t u = (bits & 0x80000000u) ? (bits & 0x7FFFFFFFu) : ~bits;
        float t;
        std::memcpy(&t, &u, sizeof t);
        thr = std::max(thr, t);
        filter = true;
      }
    }
  };
  for (; i + kBlock <= m; i += kBlock) {
    if (filter && !AnyReaching(x + i, thr)) continue;
    for (int j = i; j < i + kBlock; ++j) {
      if (!filter || x[j] >= thr) push(j);
    }
  }
  for (; i < m; ++i) {
    if (!filter || x[i] >= thr) push(i);
  }
  SortBest(buf, n, k, out);
}

class TwoStageTopKOp : public OpKernel {
 public:
  explicit TwoStageTopKOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("k", &k_));
    OP_REQUIRES(context, k_ >= 1, InvalidArgument("k must be >= 1, got ", k_));
    for (int a = 0; a < k_; ++a) {
      for (int b = 0; (a + 1) * (b + 1) <= k_; ++b) pairs_.push_back({a, b});
    }
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& s_row = context->input(0);
    const Tensor& s_col = context->input(1);
    OP_REQUIRES(context, s_row.dims() >= 1,
                InvalidArgument("s_row must have rank >= 1, got shape ",
                                s_row.shape().DebugString()));
    OP_REQUIRES(context, s_row.shape() == s_col.shape(),
                InvalidArgument("s_row and s_col must have the same shape, got ",
                                s_row.shape().DebugString(), " and ",
                                s_col.shape().DebugString()));
    const int64_t m = s_row.dim_size(s_row.dims() - 1);
    OP_REQUIRES(context, k_ <= m,
                InvalidArgument("k must be <= the number of keys m (the last dimension), got k=",
                                k_, ", m=", m));
    OP_REQUIRES(context, m * m <= std::numeric_limits<int32_t>::max(),
                InvalidArgument("m*m slot ids must fit in int32, got m=", m));
    TensorShape out_shape = s_row.shape();
    out_shape.set_dim(out_shape.dims() - 1, k_);
    Tensor* scores = nullptr;
    Tensor* slots = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, out_shape, &scores));
    OP_REQUIRES_OK(context, context->allocate_output(1, out_shape, &slots));
    const int64_t rows = m == 0 ? 0 : s_row.NumElements() / m;
    if (rows == 0) return;

    const float* row_data = s_row.flat<float>().data();
    const float* col_data = s_col.flat<float>().data();
    float* score_data = scores->flat<float>().data();
    int32_t* slot_data = slots->flat<int32_t>().data();
    const int k = k_;
    const int mm = static_cast<int>(m);
    const int p = static_cast<int>(pairs_.size());
    auto work = [&](int64_t begin, int64_t end) {
      std::vector<uint64_t> buf(kSmall * k), row_top(k), col_top(k), cand(p);
      std::vector<float> maxima(2 * k);
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = row_data + r * m;
        const float* xc = col_data + r * m;
        AxisTopK(xr, mm, k, buf.data(), maxima.data(), row_top.data());
        AxisTopK(xc, mm, k, buf.data(), maxima.data(), col_top.data());
        for (int c = 0; c < p; ++c) {
          const uint32_t i = IdOf(row_top[pairs_[c].first]);
          const uint32_t j = IdOf(col_top[pairs_[c].second]);
          cand[c] = Pack(xr[i] + xc[j], i * static_cast<uint32_t>(mm) + j);
        }
        SortBest(cand.data(), p, k, row_top.data());  // row_top is free again: reuse it
        for (int c = 0; c < k; ++c) {
          const uint32_t id = IdOf(row_top[c]);
          slot_data[r * k + c] = static_cast<int32_t>(id);
          score_data[r * k + c] = xr[id / mm] + xc[id % mm];  // the same float sum
        }
      }
    };
    // Cost per row in cycles, roughly: two vectorised scans of m, plus the buffer work.
    const int64_t cost = 4 * m + 40 * k + 20 * p;
    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(workers->num_threads, workers->workers, rows, cost, work);
  }

 private:
  int k_;
  std::vector<std::pair<int, int>> pairs_;  // (a, b) with (a+1)(b+1) <= k
};

Status ShapeFn(InferenceContext* c) {
  ShapeHandle row, col, both;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &row));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 1, &col));
  TF_RETURN_IF_ERROR(c->Merge(row, col, &both));
  int k;
  TF_RETURN_IF_ERROR(c->GetAttr("k", &k));
  DimensionHandle m = c->Dim(both, -1);
  if (c->ValueKnown(m) && c->Value(m) < k) {
    return InvalidArgument("k must be <= the number of keys m (the last dimension), got k=", k,
                           ", m=", c->Value(m));
  }
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->ReplaceDim(both, -1, c->MakeDim(k), &out));
  c->set_output(0, out);
  c->set_output(1, out);
  return Status();
}

}  // namespace

REGISTER_OP("LmnTwoStageTopK")
    .Input("s_row: float")
    .Input("s_col: float")
    .Attr("k: int >= 1")
    .Output("scores: float")
    .Output("slots: int32")
    .SetShapeFn(ShapeFn)
    .Doc(R"doc(
Exact top-k of the m*m product-key slot scores s_row[..., i] + s_col[..., j].

s_row: (..., m) row-key scores.
s_col: (..., m) column-key scores, same shape as s_row.
scores: (..., k) the winners' scores s_row[i] + s_col[j], best first.
slots: (..., k) the winners' slot ids i*m + j; equal scores: lower slot id first.
)doc");

REGISTER_KERNEL_BUILDER(Name("LmnTwoStageTopK").Device(DEVICE_CPU), TwoStageTopKOp);

}  // namespace lmn_tf
