#include "model/residual.hpp"

#include "common/error.hpp"
#include "model/parallel.hpp"

namespace augflow::model {

Residual::Residual(const Shape& in, int out, int stride, double survival)
    : in_(in),
      out_(out),
      s_(stride),
      survival_(survival),
      conv1_(in, out, 3, stride, 1, false),
      bn1_(conv1_.output_shape({1, in.c, in.h, in.w})),
      conv2_(conv1_.output_shape({1, in.c, in.h, in.w}), out, 3, 1, 1, false),
      bn2_(conv1_.output_shape({1, in.c, in.h, in.w})) {
  if (!(survival_ > 0.0 && survival_ <= 1.0))
    throw SpecError(spec() + ": the survival probability must be in (0, 1]", spec());
  conv1_.set_param_prefix("res.conv1");
  bn1_.set_param_prefix("res.bn1");
  conv2_.set_param_prefix("res.conv2");
  bn2_.set_param_prefix("res.bn2");
  if (in.c != out || stride != 1) {
    proj_ = std::make_unique<Conv2d>(in, out, 1, stride, 0, false);
    proj_bn_ = std::make_unique<BatchNorm>(proj_->output_shape({1, in.c, in.h, in.w}));
    proj_->set_param_prefix("res.proj");
    proj_bn_->set_param_prefix("res.proj_bn");
  }
}

std::string Residual::spec() const {
  std::string s = "res" + std::to_string(out_);
  if (s_ != 1) s.append("s").append(std::to_string(s_));  // not "s" + ...: GCC 12 -Wrestrict
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
  conv1_.initialize(rng);
  bn1_.initialize(rng);
  conv2_.initialize(rng);
  bn2_.initialize(rng);
  if (proj_) {
    proj_->initialize(rng);
    proj_bn_->initialize(rng);
  }
}

std::vector<Param*> Residual::params() {
  std::vector<Param*> all;
  auto add = [&](Layer& layer) {
    for (Param* p : layer.params()) all.push_back(p);
  };
  add(conv1_);
  add(bn1_);
  add(conv2_);
  add(bn2_);
  if (proj_) {
    add(*proj_);
    add(*proj_bn_);
  }
  return all;
}

std::vector<Tensor*> Residual::state() {
  std::vector<Tensor*> all;
  auto add = [&](Layer& layer) {
    for (Tensor* t : layer.state()) all.push_back(t);
  };
  add(bn1_);
  add(bn2_);
  if (proj_) add(*proj_bn_);
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
  bn1_.forward(c1_, b1_, ctx);
  r1_.resize(b1_.shape());
  for (std::size_t i = 0; i < b1_.size(); ++i) r1_[i] = b1_[i] > 0.0f ? b1_[i] : 0.0f;
  conv2_.forward(r1_, c2_, ctx);
  bn2_.forward(c2_, branch_, ctx);
  const Tensor* shortcut = &x;
  if (proj_) {
    proj_->forward(x, p1_, ctx);
    proj_bn_->forward(p1_, shortcut_, ctx);
    shortcut = &shortcut_;
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
  const std::size_t per = out.per_sample();
  for_each_chunk(n, y.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float g = gate_[i];
      const float* s = shortcut->sample(i);
      const float* b = branch_.sample(i);
      float* ys = y.sample(i);
      for (std::size_t j = 0; j < per; ++j) {
        const float z = s[j] + g * b[j];
        ys[j] = z > 0.0f ? z : 0.0f;
      }
    }
  });
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
  bn2_.backward(c2_, branch_, d_branch_, d_c2_);
  conv2_.backward(r1_, c2_, d_c2_, d_r1_);
  d_b1_.resize(b1_.shape());
  for (std::size_t i = 0; i < b1_.size(); ++i) d_b1_[i] = b1_[i] > 0.0f ? d_r1_[i] : 0.0f;
  bn1_.backward(c1_, b1_, d_b1_, d_c1_);
  conv1_.backward(x, c1_, d_c1_, dx);
  if (proj_) {
    proj_bn_->backward(p1_, shortcut_, d_short_, d_p1_);
    proj_->backward(x, p1_, d_p1_, d_px_);
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += d_px_[i];
  } else {
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += d_short_[i];
  }
}

}  // namespace augflow::model
