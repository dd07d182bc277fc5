// LmnTwoStageTopK: the exact product-key top-K of lmn_tf.memory.scoring.two_stage_top_k.
//
// For each of the N leading positions, slot (i, j) of an m x m memory has score
// s_row[i] + s_col[j] and id i*m + j. The op returns the K best slots under the tie rule of
// the stock path: higher score first, lower slot id first on equal scores.
//
// Every comparison is on a 32-bit key whose signed order is the float order (NaN lowest), and
// ties go to the lower id. The small selections are done by counting: an entry's rank is the
// number of entries that beat it, a branch-free double loop. Sorting networks or
// std::nth_element + std::sort over the same ~50 entries spend most of their time on
// mispredicted branches, as random scores make every comparison a coin toss.
//
// Two builds of the hot loops: AVX-512 intrinsics (ranking 64 entries per broadcast, the scan
// compressing 16 scores per step), picked at load time where the CPU has AVX-512F, and
// portable loops the compiler vectorises for AVX2 / baseline x86-64 (and any other target).
// LMN_TF_SELECTION_PORTABLE=1 forces the portable ones; the tests run both.
//
// Stage 1, per axis: the K best of m scores. A lower bound t on the K-th best comes from
// dealing the scores into 2K strided sets (see LowerBound); the scan then admits only scores
// >= t, skipping blocks of 16 with none (a vectorised compare), and appends the admitted ones
// branch-free. Should 4K be admitted (ties, adversarial input), the buffer is cut back to
// its K best by rank and the bar raised to the new K-th best. For random scores about
// 1.5K survive, so a row costs two vectorised passes over m plus a ranking of ~50 entries.
//
// Stage 2: the pair of the a-th best row and the b-th best column (0-based) is beaten by
// every pair (a' <= a, b' <= b), so only the ~K ln K pairs with (a+1)(b+1) <= K can win.
// A rectangle of a x K/a such pairs (a divides K) holds K slots that all score at least its
// corner, so the best corner bounds the K-th best from below; candidates under it are
// dropped, the rest ranked exactly as the stock path ranks them (the float sum's key, then
// the slot id). Float addition is monotone, so no pair outranks the pair above it, except
// that +inf + -inf is NaN: if fewer than K candidates clear the bound, all are ranked.
// Ranking (not a frontier merge) keeps the exact stock order even where rounding makes
// distinct scores sum to the same float and the slot ids decide.
//
// NaN policy: a NaN score ranks below every number (-inf included), in both stages; among
// NaNs the lower slot id comes first. The stock path's order for NaN is unspecified (TF's
// TopK makes no promise), so the two are only compared on NaN-free inputs. The layer never
// feeds NaN from real items; padded items may, and their read-out is masked afterwards.
// -0.0 and +0.0 are equal, as in float comparison.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/platform/logging.h"
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
constexpr int32_t kLowest = std::numeric_limits<int32_t>::min();  // the key of NaN
// Above this many entries, ranking by counting (quadratic) loses to nth_element + sort.
constexpr int kMaxRanked = 256;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LMN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define LMN_HAVE_AVX512 1
#include <immintrin.h>
#else
#define LMN_VECTOR_CLONES
#define LMN_HAVE_AVX512 0
#endif

// Signed key whose order is the float order: NaN lowest (below -inf), -0.0 == +0.0.
// Branch-free (selects), so that loops over it vectorise.
inline int32_t Key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u = (u == 0x80000000u) ? 0u : u;                            // -0.0 -> +0.0
  const uint32_t bits = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return static_cast<int32_t>((x != x ? 0u : bits) ^ 0x80000000u);
}

inline float FloatOf(int32_t key) {  // inverse of Key on numbers
  const uint32_t bits = static_cast<uint32_t>(key) ^ 0x80000000u;
  const uint32_t u = (bits & 0x80000000u) ? (bits & 0x7FFFFFFFu) : ~bits;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// rank[i] = how many of the n entries beat entry i: a higher key, or the same key and a lower
// id. Ids are distinct, so the ranks are 0..n-1, each once. Portable: the compiler
// vectorises the inner loop for whatever ISA this clone targets.
LMN_VECTOR_CLONES
void RanksPortable(const int32_t* key, const int32_t* id, int n, int32_t* rank) {
  for (int i = 0; i < n; ++i) {
    const int32_t ki = key[i], ii = id[i];
    int32_t r = 0;
    for (int j = 0; j < n; ++j) r += (key[j] > ki) | ((key[j] == ki) & (id[j] < ii));
    rank[i] = r;
  }
}

#if LMN_HAVE_AVX512
// The same ranks with AVX-512, 64 entries i at a time against one broadcast entry j: four
// accumulators, so four independent compare + masked-add chains per j and no horizontal
// sums. Keys alone first (one compare per 16 pairs): with distinct keys those ranks are
// final, and they sum to n(n-1)/2 exactly when the keys are distinct. Otherwise the pass is
// redone with the id tie-break (three compares per 16 pairs). Reads
// key and id up to the next multiple of 64 (Entries pads); those lanes' ranks are ignored.
__attribute__((target("avx512f"))) void RanksAvx512(const int32_t* key, const int32_t* id,
                                                     int n, int32_t* rank) {
  const __m512i one = _mm512_set1_epi32(1);
  for (int tied = n > kMaxRanked; tied < 2; ++tied) {  // many entries: ties are likely
    for (int b = 0; b < n; b += 64) {
      __m512i k[4], d[4], acc[4];
      for (int q = 0; q < 4; ++q) {
        k[q] = _mm512_loadu_si512(key + b + 16 * q);
        d[q] = _mm512_loadu_si512(id + b + 16 * q);
        acc[q] = _mm512_setzero_si512();
      }
      for (int j = 0; j < n; ++j) {
        const __m512i kj = _mm512_set1_epi32(key[j]);
        if (!tied) {
          for (int q = 0; q < 4; ++q)
            acc[q] = _mm512_mask_add_epi32(acc[q], _mm512_cmpgt_epi32_mask(kj, k[q]), acc[q], one);
        } else {
          const __m512i dj = _mm512_set1_epi32(id[j]);
          for (int q = 0; q < 4; ++q) {
            const __mmask16 beats =
                _mm512_cmpgt_epi32_mask(kj, k[q]) |
                _mm512_mask_cmplt_epi32_mask(_mm512_cmpeq_epi32_mask(kj, k[q]), dj, d[q]);
            acc[q] = _mm512_mask_add_epi32(acc[q], beats, acc[q], one);
          }
        }
      }
      for (int q = 0; q < 4; ++q) _mm512_storeu_si512(rank + b + 16 * q, acc[q]);
    }
    if (tied) return;
    // A tie group of g entries all get the rank of its best, so the ranks sum to less
    // than the 0 + 1 + ... + (n-1) of a permutation.
    int64_t sum = 0;
    for (int i = 0; i < n; ++i) sum += rank[i];
    if (sum == int64_t{n} * (n - 1) / 2) return;
  }
}
#endif

// The AVX-512 paths where the CPU has them, unless LMN_TF_SELECTION_PORTABLE=1 asks for the
// portable code (for tests, and to compare the two on one machine).
bool UseAvx512() {
  static const bool yes = [] {
    const char* env = std::getenv("LMN_TF_SELECTION_PORTABLE");
    if (env != nullptr && env[0] == '1') {
      LOG(INFO) << "LmnTwoStageTopK: LMN_TF_SELECTION_PORTABLE=1, using the portable path";
      return false;
    }
#if LMN_HAVE_AVX512
    return static_cast<bool>(__builtin_cpu_supports("avx512f"));
#else
    return false;
#endif
  }();
  return yes;
}

void Ranks(const int32_t* key, const int32_t* id, int n, int32_t* rank) {
#if LMN_HAVE_AVX512
  if (UseAvx512()) return RanksAvx512(key, id, n, rank);
#endif
  RanksPortable(key, id, n, rank);
}

// Entries are (key[c], id[c], value[c]) for c < n, n >= k; value is carried along (a score or
// a second id). Writes the k best to out_*[0..k), best first.
// The hot loops below work on raw pointers: with TF's -fno-strict-aliasing the compiler
// would otherwise reload each vector's data pointer after every store.
struct Entries {
  std::vector<int32_t> key, id, rank;
  std::vector<float> value;
  std::vector<int> order;
  // The k best, plus slot k, where the losers' branch-free writes land.
  std::vector<int32_t> best_key, best_id;
  std::vector<float> best_value;
  // Padded to a multiple of 64 entries, which RanksAvx512 reads in whole.
  Entries(int capacity, int k)
      : key(Padded(capacity)), id(Padded(capacity)), rank(Padded(capacity)),
        value(Padded(capacity)), best_key(k + 1), best_id(k + 1), best_value(k + 1) {}
  static int Padded(int n) { return (n + 63) / 64 * 64; }
};

void BestOf(Entries& e, int n, int k, int32_t* out_key, int32_t* out_id, float* out_value) {
  if (n <= kMaxRanked) {
    const int32_t *key = e.key.data(), *id = e.id.data(), *rank = e.rank.data();
    const float* value = e.value.data();
    int32_t *best_key = e.best_key.data(), *best_id = e.best_id.data();
    float* best_value = e.best_value.data();
    Ranks(key, id, n, e.rank.data());
    for (int c = 0; c < n; ++c) {  // a third or more lose: a branch would be a coin toss
      const int r = rank[c] < k ? rank[c] : k;
      best_key[r] = key[c];
      best_id[r] = id[c];
      best_value[r] = value[c];
    }
    std::memcpy(out_key, best_key, k * sizeof *out_key);
    std::memcpy(out_id, best_id, k * sizeof *out_id);
    std::memcpy(out_value, best_value, k * sizeof *out_value);
    return;
  }
  // Many entries (large K, heavy ties): positions ordered by (key desc, id asc).
  e.order.resize(n);
  for (int c = 0; c < n; ++c) e.order[c] = c;
  auto better = [&](int a, int b) {
    return e.key[a] != e.key[b] ? e.key[a] > e.key[b] : e.id[a] < e.id[b];
  };
  std::nth_element(e.order.begin(), e.order.begin() + (k - 1), e.order.end(), better);
  std::sort(e.order.begin(), e.order.begin() + k, better);
  for (int r = 0; r < k; ++r) {
    const int c = e.order[r];
    out_key[r] = e.key[c];
    out_id[r] = e.id[c];
    out_value[r] = e.value[c];
  }
}

// Keeps the k best of the n entries in place (any order); returns the k-th best's key.
int32_t CutTo(Entries& e, int n, int k) {
  int32_t *key = e.key.data(), *id = e.id.data(), *rank = e.rank.data();
  float* value = e.value.data();
  Ranks(key, id, n, rank);
  int w = 0;
  int32_t kth = 0;
  for (int c = 0; c < n; ++c) {  // w <= c: compacting in place is safe
    key[w] = key[c];
    id[w] = id[c];
    value[w] = value[c];
    kth = rank[c] == k - 1 ? key[c] : kth;
    w += rank[c] < k;
  }
  return kth;
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
// For random scores t lies close below the k-th best, so the scan admits few scores.
LMN_VECTOR_CLONES
float LowerBound(const float* __restrict x, int m, int k, Entries& e) {
  const int width = 2 * k;
  const int rows = m / width;  // the tail, if any, is left out
  if (rows == 0) return -std::numeric_limits<float>::infinity();
  float* __restrict maxima = e.value.data();
  for (int c = 0; c < width; ++c) maxima[c] = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < rows; ++r) {
    const float* row = x + r * width;
    for (int c = 0; c < width; ++c) maxima[c] = row[c] > maxima[c] ? row[c] : maxima[c];
  }
  for (int c = 0; c < width; ++c) {
    e.key[c] = Key(maxima[c]);
    e.id[c] = c;
  }
  Ranks(e.key.data(), e.id.data(), width, e.rank.data());
  float t = 0.0f;
  for (int c = 0; c < width; ++c) t = e.rank[c] == k - 1 ? maxima[c] : t;
  // A maximum of -inf may come from a set of NaNs (NaN never wins a compare), which reach no
  // number: the caller then scans without a bound.
  return t;
}

#if LMN_HAVE_AVX512
// AxisTopK's scan of the whole blocks of x, 16 scores per step: a float compare skips blocks
// with no score reaching thr, the keys are computed in-register, and those >= lo are
// compressed into e. Same cut rule as AxisTopK's admit. Returns where the tail begins.
__attribute__((target("avx512f"))) int ScanAvx512(const float* x, int m, int k, Entries& e,
                                                  int& n, int32_t& lo, float& thr,
                                                  bool& filter) {
  const int cap = 4 * k;
  const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80000000u));
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i lowest = _mm512_set1_epi32(kLowest);
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  int i = 0;
  for (; i + kBlock <= m; i += kBlock) {
    const __m512 v = _mm512_loadu_ps(x + i);
    if (filter && _mm512_cmp_ps_mask(v, _mm512_set1_ps(thr), _CMP_GE_OQ) == 0) continue;
    // Key(): -0.0 -> +0.0; negatives get their magnitude bits flipped; NaN -> kLowest.
    __m512i u = _mm512_castps_si512(v);
    u = _mm512_mask_mov_epi32(u, _mm512_cmpeq_epi32_mask(u, sign), _mm512_setzero_si512());
    const __mmask16 negative = _mm512_cmplt_epi32_mask(u, _mm512_setzero_si512());
    __m512i key = _mm512_mask_xor_epi32(u, negative, u, magnitude);
    key = _mm512_mask_mov_epi32(key, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), lowest);
    const __mmask16 in = _mm512_cmpge_epi32_mask(key, _mm512_set1_epi32(lo));
    // Compress in registers and store all 16 lanes (e has kBlock of slack past cap): a
    // compressing store to memory is much slower on Intel cores.
    _mm512_storeu_si512(e.key.data() + n, _mm512_maskz_compress_epi32(in, key));
    _mm512_storeu_si512(e.id.data() + n, _mm512_maskz_compress_epi32(
                                             in, _mm512_add_epi32(lanes, _mm512_set1_epi32(i))));
    _mm512_storeu_ps(e.value.data() + n, _mm512_maskz_compress_ps(in, v));
    n += __builtin_popcount(in);
    if (n < cap) continue;
    const int32_t kth = CutTo(e, n, k);
    n = k;
    lo = kth + 1;
    if (kth != kLowest) {
      thr = std::max(thr, FloatOf(kth));
      filter = true;
    }
  }
  return i;
}
#endif

// The k best of x[0..m) into out_key/out_id[0..k), best first. e: capacity >= 4k + kBlock.
void AxisTopK(const float* x, int m, int k, Entries& e, int32_t* out_key, int32_t* out_id,
              float* out_value) {
  const int cap = 4 * k;
  // A score enters if its key is >= lo. The float filter ">= thr" only has to let every
  // such score through; no nextafter tricks, as TF runs kernels with denormals flushed to
  // zero (a threshold one ulp below 0.0f would compare as 0.0f).
  int32_t lo = kLowest;
  float thr = -std::numeric_limits<float>::infinity();
  bool filter = false;
  if (m > cap) {  // fewer scores: a bound would let most through
    const float bound = LowerBound(x, m, k, e);
    if (bound > -std::numeric_limits<float>::infinity()) {
      thr = bound;
      lo = Key(bound);
      filter = true;
    }
  }
  int32_t *key = e.key.data(), *id = e.id.data();
  float* value = e.value.data();
  int n = 0;
  // Admits x[begin..end) branch-free (a losing entry is overwritten by the next), then, if
  // cap or more are held, cuts back to the k best and raises the bar to the k-th best.
  auto admit = [&](int begin, int end) {
    for (int j = begin; j < end; ++j) {
      const int32_t kj = Key(x[j]);
      key[n] = kj;
      id[n] = j;
      value[n] = x[j];
      n += kj >= lo;
    }
    if (n < cap) return;
    const int32_t kth = CutTo(e, n, k);
    n = k;
    lo = kth + 1;  // an equal key that comes later has a higher id: it loses
    if (kth != kLowest) {  // a number (not NaN): filter above it
      thr = std::max(thr, FloatOf(kth));
      filter = true;
    }
  };
  int i = 0;
#if LMN_HAVE_AVX512
  if (UseAvx512()) i = ScanAvx512(x, m, k, e, n, lo, thr, filter);
#endif
  for (; i + kBlock <= m; i += kBlock) {
    if (!filter || AnyReaching(x + i, thr)) admit(i, i + kBlock);
  }
  admit(i, m);
  BestOf(e, n, k, out_key, out_id, out_value);
}

// The k best of the ~k ln k pairs (a, b) with (a+1)(b+1) <= k of the axes' k best (each
// best first): slot ids and scores into slot/score[0..k). e: capacity >= the pair count.
void PairTopK(const int32_t* row_id, const float* row_score, const int32_t* col_id,
              const float* col_score, int m, int k, Entries& e, int32_t* key_out,
              int32_t* slot, float* score) {
  int32_t lo = kLowest;
  for (int a = 1; a <= k; ++a) {  // the a x k/a rectangles' corners
    if (k % a == 0) lo = std::max(lo, Key(row_score[a - 1] + col_score[k / a - 1]));
  }
  int32_t *key = e.key.data(), *id = e.id.data();
  float* value = e.value.data();
  for (int pass = 0; pass < 2; ++pass) {
    int n = 0;
    for (int a = 0; a < k; ++a) {
      const int32_t base = row_id[a] * m;
      const float r = row_score[a];
      const int cols = k / (a + 1);  // (a+1)(b+1) <= k
      for (int b = 0; b < cols; ++b) {
        const float sum = r + col_score[b];
        const int32_t kb = Key(sum);
        key[n] = kb;
        id[n] = base + col_id[b];
        value[n] = sum;
        n += kb >= lo;
      }
    }
    if (n >= k) return BestOf(e, n, k, key_out, slot, score);
    lo = kLowest;  // +inf + -inf: the bound did not hold; rank every pair
  }
}

class TwoStageTopKOp : public OpKernel {
 public:
  explicit TwoStageTopKOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("k", &k_));
    OP_REQUIRES(context, k_ >= 1, InvalidArgument("k must be >= 1, got ", k_));
    for (int a = 0; a < k_; ++a) pairs_ += k_ / (a + 1);
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
    auto work = [&](int64_t begin, int64_t end) {
      Entries e(std::max(4 * k + kBlock, pairs_), k);
      std::vector<int32_t> keys(k), row_id(k), col_id(k);
      std::vector<float> row_score(k), col_score(k);
      for (int64_t r = begin; r < end; ++r) {
        AxisTopK(row_data + r * m, mm, k, e, keys.data(), row_id.data(), row_score.data());
        AxisTopK(col_data + r * m, mm, k, e, keys.data(), col_id.data(), col_score.data());
        PairTopK(row_id.data(), row_score.data(), col_id.data(), col_score.data(), mm, k, e,
                 keys.data(), slot_data + r * k, score_data + r * k);
      }
    };
    // Cost per row in cycles, roughly: two vectorised scans of m, plus the rankings.
    const int64_t cost = 4 * m + 100 * k;
    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(workers->num_threads, workers->workers, rows, cost, work);
  }

 private:
  int k_;
  int pairs_ = 0;  // how many (a, b) have (a+1)(b+1) <= k
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
