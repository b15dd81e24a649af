#include "model/conv.hpp"

#include <algorithm>
#include <cmath>
#include <span>

#include "common/error.hpp"
#include "model/kernel_profile.hpp"
#include "model/parallel.hpp"

namespace augflow::model {
namespace {

/// The output positions o in [0, count) whose input position o * s - p + offset lies in
/// [0, size): [lo, hi).
void valid_range(int size, int count, int s, int p, int offset, int& lo, int& hi) {
  const int first = p - offset;  // o * s >= first
  lo = first <= 0 ? 0 : (first + s - 1) / s;
  const int last = size - 1 + p - offset;  // o * s <= last
  hi = last < 0 ? 0 : std::min(count, last / s + 1);
  lo = std::min(lo, hi);
}

}  // namespace

Conv2d::Conv2d(const Shape& in, int out, int kernel, int stride, int pad, bool bias)
    : c_(in.c), h_(in.h), w_(in.w), out_(out), k_(kernel), s_(stride), p_(pad), has_bias_(bias) {
  if (out_ < 1 || k_ < 1 || s_ < 1 || p_ < 0)
    throw SpecError(spec() + ": needs out >= 1, k >= 1, s >= 1 and p >= 0", spec());
  if (c_ < 1 || h_ + 2 * p_ < k_ || w_ + 2 * p_ < k_)
    throw ShapeError(spec() + ": input " + in.str() + " is smaller than the " +
                     std::to_string(k_) + "x" + std::to_string(k_) + " kernel");
  ho_ = (h_ + 2 * p_ - k_) / s_ + 1;
  wo_ = (w_ + 2 * p_ - k_) / s_ + 1;
  const int ckk = c_ * k_ * k_;
  weight_.value = Tensor({1, out_, ckk, 1});
  weight_.grad = Tensor({1, out_, ckk, 1});
  if (has_bias_) {
    bias_.value = Tensor({1, out_, 1, 1});
    bias_.grad = Tensor({1, out_, 1, 1});
  }
  bias_.regularized = false;
  set_param_prefix("conv");
  if (DnnlConv::available())
    dnnl_ = std::make_unique<DnnlConv>(ConvGeometry{c_, h_, w_, out_, k_, s_, p_, ho_, wo_, has_bias_});
}

bool Conv2d::prepare_fast_path(int n, bool backward) {
  if (!dnnl_) return false;
  const ChunkLayout layout(n);
  std::vector<int> sizes;  // the distinct chunk sizes (two for a uniform layout, more with gaps)
  for (int c = 0; c < layout.count; ++c) {
    const int size = layout.end(c) - layout.begin(c);
    if (size > 0 && std::find(sizes.begin(), sizes.end(), size) == sizes.end()) sizes.push_back(size);
  }
  if (dnnl_->prepare(sizes, layout.count, weight_.value.data(), backward)) return true;
  dnnl_.reset();  // oneDNN has no kernel for this shape: the reference path computes it
  return false;
}

void Conv2d::set_param_prefix(const std::string& prefix) {
  weight_.name = prefix + ".weight";
  bias_.name = prefix + ".bias";
}

std::string Conv2d::spec() const {
  std::string s = "conv" + std::to_string(out_) + "k" + std::to_string(k_);
  // Appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on "s" + to_string(...).
  if (s_ != 1) s.append("s").append(std::to_string(s_));
  if (p_ != 0) s.append("p").append(std::to_string(p_));
  return s;
}

Shape Conv2d::output_shape(const Shape& in) const {
  if (in.c != c_ || in.h != h_ || in.w != w_)
    throw ShapeError(spec() + ": built for inputs of " + std::to_string(c_) + "x" +
                     std::to_string(h_) + "x" + std::to_string(w_) + " per sample, got " +
                     in.str());
  return {in.n, out_, ho_, wo_};
}

std::vector<Param*> Conv2d::params() {
  if (has_bias_) return {&weight_, &bias_};
  return {&weight_};
}

void Conv2d::initialize(Rng& rng) {
  const double std_dev = std::sqrt(2.0 / (c_ * k_ * k_));
  for (float& w : weight_.value.storage()) w = static_cast<float>(rng.normal() * std_dev);
  bias_.value.fill(0.0f);
}

double Conv2d::flops_per_sample(const Shape& in) const {
  (void)in;
  return static_cast<double>(out_) * ho_ * wo_ * c_ * k_ * k_;
}

void Conv2d::im2col(const float* x, float* col) const {
  const int hw = ho_ * wo_;
  for (int c = 0; c < c_; ++c) {
    const float* plane = x + static_cast<std::size_t>(c) * h_ * w_;
    for (int ki = 0; ki < k_; ++ki) {
      for (int kj = 0; kj < k_; ++kj) {
        float* row = col + static_cast<std::size_t>((c * k_ + ki) * k_ + kj) * hw;
        int lo, hi;
        valid_range(w_, wo_, s_, p_, kj, lo, hi);
        for (int oh = 0; oh < ho_; ++oh) {
          float* dst = row + oh * wo_;
          const int ih = oh * s_ - p_ + ki;
          if (ih < 0 || ih >= h_) {
            std::fill(dst, dst + wo_, 0.0f);
            continue;
          }
          const float* src = plane + ih * w_;  // dst[ow] = src[ow * s - p + kj]
          std::fill(dst, dst + lo, 0.0f);
          if (s_ == 1) {
            std::copy(src + lo - p_ + kj, src + hi - p_ + kj, dst + lo);
          } else {
            for (int ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s_ - p_ + kj];
          }
          std::fill(dst + hi, dst + wo_, 0.0f);
        }
      }
    }
  }
}

void Conv2d::col2im(const float* col, float* x) const {
  std::fill(x, x + static_cast<std::size_t>(c_) * h_ * w_, 0.0f);
  const int hw = ho_ * wo_;
  for (int c = 0; c < c_; ++c) {
    float* plane = x + static_cast<std::size_t>(c) * h_ * w_;
    for (int ki = 0; ki < k_; ++ki) {
      for (int kj = 0; kj < k_; ++kj) {
        const float* row = col + static_cast<std::size_t>((c * k_ + ki) * k_ + kj) * hw;
        int lo, hi;
        valid_range(w_, wo_, s_, p_, kj, lo, hi);
        for (int oh = 0; oh < ho_; ++oh) {
          const int ih = oh * s_ - p_ + ki;
          if (ih < 0 || ih >= h_) continue;
          const float* src = row + oh * wo_;
          float* dst = plane + ih * w_;
          for (int ow = lo; ow < hi; ++ow) dst[ow * s_ - p_ + kj] += src[ow];
        }
      }
    }
  }
}

void Conv2d::reserve_chunks(int chunks, bool backward) {
  const std::size_t col_size = pointwise() ? 0 : static_cast<std::size_t>(c_) * k_ * k_ * ho_ * wo_;
  if (static_cast<int>(col_.size()) < chunks) col_.resize(chunks);
  for (int c = 0; c < chunks; ++c)
    if (col_[c].size() < col_size) col_[c].resize(col_size);
  if (!backward) return;
  if (static_cast<int>(dcol_.size()) < chunks) dcol_.resize(chunks);
  for (int c = 0; c < chunks; ++c)
    if (input_gradient_ && dcol_[c].size() < col_size) dcol_[c].resize(col_size);
}

void Conv2d::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  const Shape out = output_shape(x.shape());
  y.resize(out);
  const int n = out.n;
  const int ckk = c_ * k_ * k_;
  const int hw = ho_ * wo_;
  const std::size_t work = static_cast<std::size_t>(n) * out_ * hw * ckk;
  const KernelTimer timer(&KernelProfile::conv_forward, 2.0 * static_cast<double>(work));
  if (n > 0 && prepare_fast_path(n, false)) {
    const std::size_t in_size = static_cast<std::size_t>(c_) * h_ * w_;
    const std::size_t out_size = static_cast<std::size_t>(out_) * hw;
    for_each_chunk(n, work, [&](int chunk, int begin, int end) {
      dnnl_->forward(chunk, end - begin, x.data() + begin * in_size, has_bias_ ? bias_.value.data() : nullptr,
                     y.data() + begin * out_size);
    });
    return;
  }
  reserve_chunks(ChunkLayout(n).count, false);
  const ConstMatrixMap w(weight_.value.data(), out_, ckk);
  const Eigen::Map<const Eigen::VectorXf> b(bias_.value.data(), has_bias_ ? out_ : 0);
  for_each_chunk(n, work, [&](int chunk, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float* col = x.sample(i);
      if (!pointwise()) {
        im2col(x.sample(i), col_[chunk].data());
        col = col_[chunk].data();
      }
      MatrixMap yi(y.sample(i), out_, hw);
      yi.noalias() = w * ConstMatrixMap(col, ckk, hw);
      if (has_bias_) yi.colwise() += b;
    }
  });
}

void Conv2d::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  const int n = x.shape().n;
  const int ckk = c_ * k_ * k_;
  const int hw = ho_ * wo_;
  if (input_gradient_) dx.resize(x.shape());
  const ChunkLayout layout(n);
  const std::size_t work = static_cast<std::size_t>(n) * out_ * hw * ckk;
  const KernelTimer timer(&KernelProfile::conv_backward, (input_gradient_ ? 4.0 : 2.0) * static_cast<double>(work));
  grad_parts_.reserve(layout, grad_stride());
  if (n > 0 && prepare_fast_path(n, true)) {
    const std::size_t in_size = static_cast<std::size_t>(c_) * h_ * w_;
    const std::size_t out_size = static_cast<std::size_t>(out_) * hw;
    for_each_chunk(n, work, [&](int chunk, int begin, int end) {
      float* dw = grad_parts_.chunk(chunk);
      float* db = dw + weight_.value.size();
      if (!has_bias_) std::fill(db, db + out_, 0.0f);
      dnnl_->backward(chunk, end - begin, x.data() + begin * in_size, dy.data() + begin * out_size, dw,
                      has_bias_ ? db : nullptr, input_gradient_ ? dx.data() + begin * in_size : nullptr);
    });
  } else {
    backward_reference(x, dy, dx);
  }
  // Partial sums in chunk order, over the chunks of the whole batch (other processes' too): the
  // same additions whatever ran where.
  const float* sums = grad_parts_.sum(layout);
  float* gw = weight_.grad.data();
  for (std::size_t k = 0; k < weight_.value.size(); ++k) gw[k] += sums[k];
  if (has_bias_)
    for (int k = 0; k < out_; ++k) bias_.grad[k] += sums[weight_.value.size() + k];
}

void Conv2d::backward_reference(const Tensor& x, const Tensor& dy, Tensor& dx) {
  const int n = x.shape().n;
  const int ckk = c_ * k_ * k_;
  const int hw = ho_ * wo_;
  const ChunkLayout layout(n);
  reserve_chunks(layout.count, true);
  const ConstMatrixMap w(weight_.value.data(), out_, ckk);
  const std::size_t work = static_cast<std::size_t>(n) * out_ * hw * ckk;
  for_each_chunk(n, work, [&](int chunk, int begin, int end) {
    MatrixMap dw(grad_parts_.chunk(chunk), out_, ckk);
    Eigen::Map<Eigen::VectorXf> db(grad_parts_.chunk(chunk) + weight_.value.size(), out_);
    dw.setZero();
    db.setZero();
    for (int i = begin; i < end; ++i) {
      const float* col = x.sample(i);
      if (!pointwise()) {
        im2col(x.sample(i), col_[chunk].data());
        col = col_[chunk].data();
      }
      const ConstMatrixMap dyi(dy.sample(i), out_, hw);
      dw.noalias() += dyi * ConstMatrixMap(col, ckk, hw).transpose();
      // Column by column, not dyi.rowwise().sum(): Eigen's vectorised row reduction peels
      // and pairs its terms according to the data's address, so the same numbers summed from
      // another allocation round differently (bit-identical results need a fixed order).
      if (has_bias_)
        for (int j = 0; j < hw; ++j) db += dyi.col(j);
      if (!input_gradient_) continue;
      if (pointwise()) {
        MatrixMap(dx.sample(i), ckk, hw).noalias() = w.transpose() * dyi;
      } else {
        MatrixMap dcol(dcol_[chunk].data(), ckk, hw);
        dcol.noalias() = w.transpose() * dyi;
        col2im(dcol_[chunk].data(), dx.sample(i));
      }
    }
  });
}

}  // namespace augflow::model
