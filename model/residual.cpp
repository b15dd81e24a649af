#include "model/residual.hpp"

#include <type_traits>

#include "common/error.hpp"
#include "model/parallel.hpp"

namespace augflow::model {

Residual::Residual(const Shape& in, int out, int stride, double survival, bool batch_norm)
    : in_(in),
      out_(out),
      s_(stride),
      survival_(survival),
      conv1_(in, out, 3, stride, 1, !batch_norm),
      conv2_(conv1_.output_shape({1, in.c, in.h, in.w}), out, 3, 1, 1, !batch_norm) {
  const Shape mid = conv1_.output_shape({1, in.c, in.h, in.w});
  if (batch_norm) {
    bn1_ = std::make_unique<BatchNorm>(mid);
    bn1_->set_fused_relu(true);  // conv1 -> bn1 -> relu: the ReLU runs inside bn1's passes
    bn2_ = std::make_unique<BatchNorm>(mid);
  }
  if (!(survival_ > 0.0 && survival_ <= 1.0))
    throw SpecError(spec() + ": the survival probability must be in (0, 1]", spec());
  conv1_.set_param_prefix("res.conv1");
  conv2_.set_param_prefix("res.conv2");
  if (batch_norm) {
    bn1_->set_param_prefix("res.bn1");
    bn2_->set_param_prefix("res.bn2");
  }
  if (in.c != out || stride != 1) {
    proj_ = std::make_unique<Conv2d>(in, out, 1, stride, 0, !batch_norm);
    proj_->set_param_prefix("res.proj");
    if (batch_norm) {
      proj_bn_ = std::make_unique<BatchNorm>(proj_->output_shape({1, in.c, in.h, in.w}));
      proj_bn_->set_param_prefix("res.proj_bn");
    }
  }
}

std::string Residual::spec() const {
  std::string s = "res" + std::to_string(out_);
  if (s_ != 1) s.append("s").append(std::to_string(s_));  // not "s" + ...: GCC 12 -Wrestrict
  if (!batch_norm()) s.append("b0");
  return s;
}

Shape Residual::output_shape(const Shape& in) const {
  if (in.c != in_.c || in.h != in_.h || in.w != in_.w)
    throw ShapeError(spec() + ": built for inputs of " + std::to_string(in_.c) + "x" +
                     std::to_string(in_.h) + "x" + std::to_string(in_.w) + " per sample, got " +
                     in.str());
  return conv1_.output_shape(in);
}

void Residual::initialize(Rng& rng) {
  // In the order of params(): the draws of the b1 block are those it always had.
  conv1_.initialize(rng);
  if (bn1_) bn1_->initialize(rng);
  conv2_.initialize(rng);
  if (bn2_) bn2_->initialize(rng);
  if (proj_) proj_->initialize(rng);
  if (proj_bn_) proj_bn_->initialize(rng);
}

std::vector<Param*> Residual::params() {
  std::vector<Param*> all;
  auto add = [&](Layer& layer) {
    for (Param* p : layer.params()) all.push_back(p);
  };
  add(conv1_);
  if (bn1_) add(*bn1_);
  add(conv2_);
  if (bn2_) add(*bn2_);
  if (proj_) add(*proj_);
  if (proj_bn_) add(*proj_bn_);
  return all;
}

std::vector<Tensor*> Residual::state() {
  std::vector<Tensor*> all;
  auto add = [&](Layer& layer) {
    for (Tensor* t : layer.state()) all.push_back(t);
  };
  if (bn1_) add(*bn1_);
  if (bn2_) add(*bn2_);
  if (proj_bn_) add(*proj_bn_);
  return all;
}

double Residual::flops_per_sample(const Shape& in) const {
  const Shape mid = output_shape(in);
  double f = conv1_.flops_per_sample(in) + conv2_.flops_per_sample(mid);
  if (proj_) f += proj_->flops_per_sample(in);
  return f;
}

void Residual::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  const Shape out = output_shape(x.shape());
  const int n = out.n;
  conv1_.forward(x, c1_, ctx);
  if (bn1_) {
    bn1_->forward(c1_, r1_, ctx);  // batch norm and the ReLU in one pass (set_fused_relu)
  } else {
    r1_.resize(c1_.shape());
    const std::size_t mid_per = c1_.shape().per_sample();
    for_each_chunk(n, c1_.size(), [&](int, int begin, int end) {  // elementwise: any split gives the same
      const float* __restrict in = c1_.data() + begin * mid_per;
      float* __restrict r = r1_.data() + begin * mid_per;
      for (std::size_t j = 0, len = (end - begin) * mid_per; j < len; ++j) r[j] = in[j] > 0.0f ? in[j] : 0.0f;
    });
  }
  conv2_.forward(r1_, c2_, ctx);
  // bn2 and the projection's bn only measure here; their normalisation is applied in the final
  // add, which saves writing and re-reading two activations (Residual.WithBatchNormEqualsItsLayersComposedBitForBit
  // checks that the result is the layers composed, bit for bit).
  if (bn2_) bn2_->statistics(c2_, ctx);
  const Tensor* shortcut = &x;
  if (proj_) {
    proj_->forward(x, p1_, ctx);
    shortcut = &p1_;
    if (proj_bn_) proj_bn_->statistics(p1_, ctx);
  }
  gate_.resize(n);
  for (int i = 0; i < n; ++i) {
    if (survival_ >= 1.0)
      gate_[i] = 1.0f;
    else if (ctx.mode == Mode::train)
      gate_[i] = ctx.rng(i).bernoulli(survival_) ? 1.0f : 0.0f;
    else
      gate_[i] = static_cast<float>(survival_);
  }
  y.resize(out);
  const std::size_t plane = static_cast<std::size_t>(out.h) * out.w;
  // y = relu(shortcut + g * branch), each side through its batch norm's affine map if it has one.
  const auto add = [&](auto branch_bn, auto shortcut_bn) {
    for_each_chunk(n, y.size(), [&](int, int begin, int end) {
      for (int i = begin; i < end; ++i) {
        const float g = gate_[i];
        for (int c = 0; c < out_; ++c) {
          const float* __restrict s = shortcut->sample(i) + c * plane;
          const float* __restrict b = c2_.sample(i) + c * plane;
          float* __restrict ys = y.sample(i) + c * plane;
          float b_scale = 1.0f, b_shift = 0.0f, s_scale = 1.0f, s_shift = 0.0f;
          if constexpr (decltype(branch_bn)::value) b_scale = bn2_->scale(c), b_shift = bn2_->shift(c);
          if constexpr (decltype(shortcut_bn)::value) s_scale = proj_bn_->scale(c), s_shift = proj_bn_->shift(c);
          for (std::size_t j = 0; j < plane; ++j) {
            float branch = b[j], short_cut = s[j];
            if constexpr (decltype(branch_bn)::value) branch = branch * b_scale + b_shift;
            if constexpr (decltype(shortcut_bn)::value) short_cut = short_cut * s_scale + s_shift;
            const float z = short_cut + g * branch;
            ys[j] = z > 0.0f ? z : 0.0f;
          }
        }
      }
    });
  };
  if (!bn2_)
    add(std::false_type{}, std::false_type{});
  else if (!proj_bn_)
    add(std::true_type{}, std::false_type{});
  else
    add(std::true_type{}, std::true_type{});
}

void Residual::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  const Shape out = y.shape();
  const int n = out.n;
  const std::size_t per = out.per_sample();
  // dz = dy * relu'(z) (y > 0 exactly when z > 0) is the shortcut's gradient; g * dz the branch's.
  d_short_.resize(out);
  d_branch_.resize(out);
  for_each_chunk(n, y.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float g = gate_[i];
      const float* ys = y.sample(i);
      const float* gs = dy.sample(i);
      float* ds = d_short_.sample(i);
      float* db = d_branch_.sample(i);
      for (std::size_t j = 0; j < per; ++j) {
        ds[j] = ys[j] > 0.0f ? gs[j] : 0.0f;
        db[j] = g * ds[j];
      }
    }
  });
  const Tensor* d_c2 = &d_branch_;
  if (bn2_) {
    bn2_->backward(c2_, c2_, d_branch_, d_c2_);  // y unread: bn2 has no fused ReLU
    d_c2 = &d_c2_;
  }
  conv2_.backward(r1_, c2_, *d_c2, d_r1_);
  const Tensor* d_c1 = &d_c1_;
  if (bn1_) {
    bn1_->backward(c1_, r1_, d_r1_, d_c1_);  // takes the ReLU's mask from r1_
  } else {
    d_c1_.resize(c1_.shape());
    const std::size_t mid_per = c1_.shape().per_sample();
    for_each_chunk(n, c1_.size(), [&](int, int begin, int end) {
      const float* __restrict a = c1_.data() + begin * mid_per;
      const float* __restrict g = d_r1_.data() + begin * mid_per;
      float* __restrict d = d_c1_.data() + begin * mid_per;
      for (std::size_t j = 0, len = (end - begin) * mid_per; j < len; ++j) d[j] = a[j] > 0.0f ? g[j] : 0.0f;
    });
  }
  // The convs that read x skip their dx when this block's input needs no gradient.
  conv1_.set_input_gradient(input_gradient_);
  conv1_.backward(x, c1_, *d_c1, dx);
  const Tensor* d_short = &d_short_;
  if (proj_) {
    proj_->set_input_gradient(input_gradient_);
    const Tensor* d_p1 = &d_short_;
    if (proj_bn_) {
      proj_bn_->backward(p1_, p1_, d_short_, d_p1_);  // y unread, as bn2's
      d_p1 = &d_p1_;
    }
    proj_->backward(x, p1_, *d_p1, d_px_);
    d_short = &d_px_;
  }
  if (!input_gradient_) return;
  const std::size_t in_per = dx.shape().per_sample();
  for_each_chunk(n, dx.size(), [&](int, int begin, int end) {
    const float* __restrict s = d_short->data() + begin * in_per;
    float* __restrict d = dx.data() + begin * in_per;
    for (std::size_t j = 0, len = (end - begin) * in_per; j < len; ++j) d[j] += s[j];
  });
}

}  // namespace augflow::model
