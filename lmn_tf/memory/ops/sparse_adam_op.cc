// LmnSparseAdamApply: lmn_tf.memory.SparseAdam's step ("lazy" Adam) on the rows of a sparse
// gradient, in one pass and with the duplicate rows summed in place.
//
// For every distinct index r of `indices`, with g the sum of the `grad` rows at r:
//   m[r] = beta1 m[r] + (1 - beta1) g,  v[r] = beta2 v[r] + (1 - beta2) g^2,
//   var[r] -= lr m[r] / (sqrt(v[r]) + epsilon);
// other rows are untouched. That is the stock path (tf-keras' deduplication, an
// unsorted_segment_sum over tf.unique, then gathers and three scatters) without its (R, d)
// and (U, d) temporaries: the R gradient rows are dealt into buckets of adjacent indices by a
// counting pass, and each bucket (a Shard task) sorts its few entries, sums each run of equal
// indices in their input order and updates that row of m, v and var. The sum order is the
// input order, as in the stock path, so the step is deterministic whatever the thread count.

#define EIGEN_USE_THREADS  // training_op_helpers.h copies on the CPU thread pool

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"

namespace lmn_tf {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShapeUtils;
using ::tensorflow::errors::InvalidArgument;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
using CPUDevice = Eigen::ThreadPoolDevice;

template <typename Index>
class SparseAdamApplyOp : public OpKernel {
 public:
  explicit SparseAdamApplyOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    auto locks = ::tensorflow::MaybeLockVariableInputMutexesInOrder<CPUDevice, float>(
        context, /*do_lock=*/true, /*sparse=*/true, {0, 1, 2});
    Tensor var, m, v;
    for (auto [input, tensor] : {std::pair{0, &var}, {1, &m}, {2, &v}}) {
      OP_REQUIRES_OK(context, ::tensorflow::GetInputTensorFromVariable<CPUDevice, float>(
                                  context, input, /*lock_held=*/true, /*sparse=*/true, tensor));
    }
    OP_REQUIRES(context, var.IsInitialized() && m.IsInitialized() && v.IsInitialized(),
                InvalidArgument("var, m and v must be initialized"));
    OP_REQUIRES(context, var.dims() == 2,
                InvalidArgument("var must be a matrix, got shape ", var.shape().DebugString()));
    OP_REQUIRES(context, m.shape() == var.shape() && v.shape() == var.shape(),
                InvalidArgument("m and v must have var's shape ", var.shape().DebugString(),
                                ", got ", m.shape().DebugString(), " and ",
                                v.shape().DebugString()));
    float scalar[4];  // lr, beta1, beta2, epsilon
    for (int i = 0; i < 4; ++i) {
      const Tensor& t = context->input(3 + i);
      OP_REQUIRES(context, TensorShapeUtils::IsScalar(t.shape()),
                  InvalidArgument("lr, beta1, beta2 and epsilon must be scalars, got shape ",
                                  t.shape().DebugString(), " for input ", 3 + i));
      scalar[i] = t.scalar<float>()();
    }
    const Tensor& grad = context->input(7);
    const Tensor& indices = context->input(8);
    OP_REQUIRES(context, TensorShapeUtils::IsVector(indices.shape()),
                InvalidArgument("indices must be a vector, got shape ",
                                indices.shape().DebugString()));
    const int64_t rows = var.dim_size(0), dim = var.dim_size(1), n = indices.dim_size(0);
    OP_REQUIRES(context, grad.dims() == 2 && grad.dim_size(0) == n && grad.dim_size(1) == dim,
                InvalidArgument("grad must have shape [", n, ", ", dim, "] (indices, var's "
                                "row), got ", grad.shape().DebugString()));
    const auto ids = indices.vec<Index>();
    for (int64_t i = 0; i < n; ++i) {
      OP_REQUIRES(context, ids(i) >= 0 && ids(i) < rows,
                  InvalidArgument("indices[", i, "] = ", ids(i), " is not in [0, ", rows, ")"));
    }
    if (n == 0) return;

    // Deal the entries into buckets of adjacent rows (a counting sort by bucket).
    const int64_t buckets = std::min<int64_t>(rows, std::max<int64_t>(1, n / 16));
    auto bucket_of = [&](int64_t r) { return r * buckets / rows; };
    std::vector<int64_t> start(buckets + 1, 0);
    for (int64_t i = 0; i < n; ++i) ++start[bucket_of(ids(i)) + 1];
    for (int64_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
    std::vector<int64_t> order(n), next(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[next[bucket_of(ids(i))]++] = i;  // input order kept

    const float lr = scalar[0], beta1 = scalar[1], beta2 = scalar[2], epsilon = scalar[3];
    const float* g = grad.flat<float>().data();
    float* w = var.flat<float>().data();
    float* mm = m.flat<float>().data();
    float* vv = v.flat<float>().data();
    auto work = [&](int64_t first, int64_t last) {
      std::vector<float> sum(dim);
      for (int64_t b = first; b < last; ++b) {
        auto* begin = order.data() + start[b];
        auto* end = order.data() + start[b + 1];
        // Insertion sort (a bucket holds ~16 entries; no allocation), stable: equal rows
        // keep the input order, so each row's sum runs in that order.
        for (auto* i = begin + 1; i < end; ++i) {
          const int64_t x = *i;
          auto* j = i;
          for (; j > begin && ids(*(j - 1)) > ids(x); --j) *j = *(j - 1);
          *j = x;
        }
        for (auto* run = begin; run != end;) {
          const int64_t r = ids(*run);
          std::fill(sum.begin(), sum.end(), 0.0f);
          for (; run != end && ids(*run) == r; ++run) {
            const float* gi = g + *run * dim;
            for (int64_t j = 0; j < dim; ++j) sum[j] += gi[j];
          }
          // Three distinct tables: restrict lets the compiler vectorise sqrt and the division.
          float* __restrict__ wr = w + r * dim;
          float* __restrict__ mr = mm + r * dim;
          float* __restrict__ vr = vv + r * dim;
          const float* __restrict__ gr = sum.data();
          for (int64_t j = 0; j < dim; ++j) {
            mr[j] = beta1 * mr[j] + (1 - beta1) * gr[j];
            vr[j] = beta2 * vr[j] + (1 - beta2) * gr[j] * gr[j];
            wr[j] -= lr * mr[j] / (std::sqrt(vr[j]) + epsilon);
          }
        }
      }
    };
    const int64_t cost = std::max<int64_t>(1, (n / buckets) * dim * 8);  // per bucket
    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(workers->num_threads, workers->workers, buckets, cost, work);
  }
};

}  // namespace

REGISTER_OP("LmnSparseAdamApply")
    .Input("var: resource")
    .Input("m: resource")
    .Input("v: resource")
    .Input("lr: float")
    .Input("beta1: float")
    .Input("beta2: float")
    .Input("epsilon: float")
    .Input("grad: float")
    .Input("indices: Tindices")
    .Attr("Tindices: {int32, int64}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused;
      for (int i = 3; i < 7; ++i) TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(7), 2, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(8), 1, &unused));
      return absl::OkStatus();
    })
    .Doc("lmn_tf.memory.SparseAdam's step on the rows of a gradient with repeated indices.");

REGISTER_KERNEL_BUILDER(
    Name("LmnSparseAdamApply").Device(DEVICE_CPU).TypeConstraint<int32_t>("Tindices"),
    SparseAdamApplyOp<int32_t>);
REGISTER_KERNEL_BUILDER(
    Name("LmnSparseAdamApply").Device(DEVICE_CPU).TypeConstraint<int64_t>("Tindices"),
    SparseAdamApplyOp<int64_t>);

}  // namespace lmn_tf
