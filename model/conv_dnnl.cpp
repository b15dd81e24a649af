#include "model/conv_dnnl.hpp"

#include "common/error.hpp"
#include "model/tensor.hpp"

#if defined(AUGFLOW_HAVE_DNNL)

#include <algorithm>
#include <map>
#include <unordered_map>
#include <vector>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

namespace augflow::model {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

/// One thread for oneDNN calls made by this thread (see the header).
void single_thread() {
  if (omp_get_max_threads() != 1) omp_set_num_threads(1);
}

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

/// A reorder between two layouts of the same tensor, or nothing when they are the same.
struct Reorder {
  memory::desc from, to;
  std::unique_ptr<dnnl::reorder> prim;
  Reorder() = default;
  Reorder(const memory::desc& a, const memory::desc& b) : from(a), to(b) {
    if (a != b) prim = std::make_unique<dnnl::reorder>(dnnl::reorder::primitive_desc(cpu_engine(), a, cpu_engine(), b));
  }
  /// Returns where the data is in layout `to`: `src` itself, or `buffer` after the reorder.
  float* run(dnnl::stream& s, const float* src, float* buffer) const {
    if (!prim) return const_cast<float*>(src);
    memory a(from, cpu_engine(), const_cast<float*>(src));
    memory b(to, cpu_engine(), buffer);
    prim->execute(s, a, b);
    return buffer;
  }
};

std::size_t floats(const memory::desc& d) { return d.get_size() / sizeof(float); }

}  // namespace

/// The primitives for one chunk size (a batch has at most two: ChunkLayout::size and the last).
struct Prims {
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_weights::primitive_desc bwd_w_pd;
  std::unique_ptr<dnnl::convolution_forward> fwd;
  std::unique_ptr<dnnl::convolution_backward_data> bwd_data;
  std::unique_ptr<dnnl::convolution_backward_weights> bwd_w;
  Reorder x_to_src, dst_to_y;                     // forward
  Reorder x_to_bsrc, dy_to_ddst, dsrc_to_dx;      // backward
  Reorder dy_to_ddst_data;                        // when bwd_data reads dy in another layout
  Reorder bw_to_user;                             // the chunk's weight gradient, to out x CKK
  Reorder w_to_fwd, w_to_bwd;                     // weights, once per call
  FloatBuffer w_fwd, w_bwd;                       // the reordered weights
  std::size_t scratch = 0, src = 0, dst = 0, dst2 = 0, dsrc = 0, dw = 0;  // floats per chunk
};

struct DnnlConv::Impl {
  ConvGeometry g;
  std::map<int, Prims> prims;  // by chunk size
  struct Slot {
    dnnl::stream stream{cpu_engine()};
    FloatBuffer scratch, src, dst, dst2, dsrc, dw;  // 64-byte aligned
  };
  std::vector<Slot> slots;

  Prims& get(int n) {
    const auto it = prims.find(n);
    if (it == prims.end()) throw Error("DnnlConv: chunk size " + std::to_string(n) + " was not prepared");
    return it->second;
  }

  Prims make(int n) const {
    const memory::dims src_dims{n, g.c, g.h, g.w}, w_dims{g.out, g.c, g.k, g.k}, dst_dims{n, g.out, g.ho, g.wo};
    const memory::dims strides{g.s, g.s}, pad{g.p, g.p};
    const memory::desc src_any(src_dims, kF32, Tag::any), w_any(w_dims, kF32, Tag::any),
        dst_any(dst_dims, kF32, Tag::any);
    const memory::desc bias = g.bias ? memory::desc({g.out}, kF32, Tag::x) : memory::desc();
    // The caller owns the scratchpad (one per chunk): oneDNN's own would be shared by all
    // threads running the same primitive.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    Prims p;
    p.fwd_pd = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                        src_any, w_any, bias, dst_any, strides, pad, pad),
        attr, cpu_engine());
    p.bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, src_any, w_any, dst_any, strides,
                                              pad, pad),
        attr, cpu_engine(), p.fwd_pd);
    p.bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src_any, w_any, bias, dst_any,
                                                 strides, pad, pad),
        attr, cpu_engine(), p.fwd_pd);
    p.fwd = std::make_unique<dnnl::convolution_forward>(p.fwd_pd);
    p.bwd_data = std::make_unique<dnnl::convolution_backward_data>(p.bwd_data_pd);
    p.bwd_w = std::make_unique<dnnl::convolution_backward_weights>(p.bwd_w_pd);
    const memory::desc x_user(src_dims, kF32, Tag::nchw), y_user(dst_dims, kF32, Tag::nchw),
        w_user(w_dims, kF32, Tag::oihw);
    p.x_to_src = Reorder(x_user, p.fwd_pd.src_desc());
    p.dst_to_y = Reorder(p.fwd_pd.dst_desc(), y_user);
    p.x_to_bsrc = Reorder(x_user, p.bwd_w_pd.src_desc());
    p.dy_to_ddst = Reorder(y_user, p.bwd_w_pd.diff_dst_desc());
    if (p.bwd_data_pd.diff_dst_desc() != p.bwd_w_pd.diff_dst_desc())
      p.dy_to_ddst_data = Reorder(y_user, p.bwd_data_pd.diff_dst_desc());
    p.dsrc_to_dx = Reorder(p.bwd_data_pd.diff_src_desc(), x_user);
    p.bw_to_user = Reorder(p.bwd_w_pd.diff_weights_desc(), w_user);
    p.w_to_fwd = Reorder(w_user, p.fwd_pd.weights_desc());
    p.w_to_bwd = Reorder(w_user, p.bwd_data_pd.weights_desc());
    p.w_fwd.resize(floats(p.fwd_pd.weights_desc()));
    p.w_bwd.resize(floats(p.bwd_data_pd.weights_desc()));
    p.scratch = std::max({floats(p.fwd_pd.scratchpad_desc()), floats(p.bwd_data_pd.scratchpad_desc()),
                          floats(p.bwd_w_pd.scratchpad_desc())});
    p.src = std::max(floats(p.fwd_pd.src_desc()), floats(p.bwd_w_pd.src_desc()));
    p.dst = std::max(floats(p.fwd_pd.dst_desc()), floats(p.bwd_w_pd.diff_dst_desc()));
    p.dsrc = floats(p.bwd_data_pd.diff_src_desc());
    p.dst2 = p.dy_to_ddst_data.prim ? floats(p.bwd_data_pd.diff_dst_desc()) : 0;
    p.dw = floats(p.bwd_w_pd.diff_weights_desc());
    return p;
  }
};

bool DnnlConv::available() { return true; }

DnnlConv::DnnlConv(const ConvGeometry& g) : impl_(std::make_unique<Impl>()) { impl_->g = g; }
DnnlConv::~DnnlConv() = default;

bool DnnlConv::prepare(std::span<const int> chunk_sizes, int slots, const float* weight, bool backward) {
  single_thread();
  auto& im = *impl_;
  if (static_cast<int>(im.slots.size()) < slots) im.slots.resize(slots);
  for (int n : chunk_sizes) {
    auto it = im.prims.find(n);
    if (it == im.prims.end()) {
      try {
        it = im.prims.emplace(n, im.make(n)).first;
      } catch (const dnnl::error& e) {
        if (e.status == dnnl_unimplemented) return false;  // no kernel for this shape
        throw;
      }
    }
    Prims& p = it->second;
    for (auto& s : im.slots) {
      auto grow = [](FloatBuffer& v, std::size_t size) {
        if (v.size() < size) v.resize(size);
      };
      grow(s.scratch, p.scratch);
      grow(s.src, p.src);
      grow(s.dst, p.dst);
      if (backward) {
        grow(s.dsrc, p.dsrc);
        grow(s.dst2, p.dst2);
        grow(s.dw, p.dw);
      }
    }
    dnnl::stream& stream = im.slots[0].stream;
    if (backward) {
      float* w = p.w_to_bwd.run(stream, weight, p.w_bwd.data());
      if (w != p.w_bwd.data()) std::copy(weight, weight + p.w_bwd.size(), p.w_bwd.data());
    } else {
      float* w = p.w_to_fwd.run(stream, weight, p.w_fwd.data());
      if (w != p.w_fwd.data()) std::copy(weight, weight + p.w_fwd.size(), p.w_fwd.data());
    }
  }
  return true;
}

void DnnlConv::forward(int slot, int n, const float* x, const float* bias, float* y) {
  single_thread();
  Prims& p = impl_->get(n);
  auto& s = impl_->slots[slot];
  float* src = p.x_to_src.run(s.stream, x, s.src.data());
  float* dst = p.dst_to_y.prim ? s.dst.data() : y;
  memory src_m(p.fwd_pd.src_desc(), cpu_engine(), src), w_m(p.fwd_pd.weights_desc(), cpu_engine(), p.w_fwd.data()),
      dst_m(p.fwd_pd.dst_desc(), cpu_engine(), dst),
      scratch_m(p.fwd_pd.scratchpad_desc(), cpu_engine(), s.scratch.data());
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, src_m}, {DNNL_ARG_WEIGHTS, w_m}, {DNNL_ARG_DST, dst_m}, {DNNL_ARG_SCRATCHPAD, scratch_m}};
  if (impl_->g.bias) args.emplace(DNNL_ARG_BIAS, memory(p.fwd_pd.bias_desc(), cpu_engine(), const_cast<float*>(bias)));
  p.fwd->execute(s.stream, args);
  if (p.dst_to_y.prim) p.dst_to_y.run(s.stream, dst, y);
}

void DnnlConv::backward(int slot, int n, const float* x, const float* dy, float* dw, float* db, float* dx) {
  single_thread();
  Prims& p = impl_->get(n);
  auto& s = impl_->slots[slot];
  const auto& e = cpu_engine();
  float* ddst = p.dy_to_ddst.run(s.stream, dy, s.dst.data());
  memory ddst_m(p.bwd_w_pd.diff_dst_desc(), e, ddst);
  if (dx) {
    float* dsrc = p.dsrc_to_dx.prim ? s.dsrc.data() : dx;
    // Both backward kernels usually read dy in the same layout; when not, bwd_data gets its own.
    memory ddst_data = ddst_m;
    if (p.dy_to_ddst_data.prim)
      ddst_data = memory(p.bwd_data_pd.diff_dst_desc(), e, p.dy_to_ddst_data.run(s.stream, dy, s.dst2.data()));
    p.bwd_data->execute(s.stream, {{DNNL_ARG_DIFF_DST, ddst_data},
                                   {DNNL_ARG_WEIGHTS, memory(p.bwd_data_pd.weights_desc(), e, p.w_bwd.data())},
                                   {DNNL_ARG_DIFF_SRC, memory(p.bwd_data_pd.diff_src_desc(), e, dsrc)},
                                   {DNNL_ARG_SCRATCHPAD, memory(p.bwd_data_pd.scratchpad_desc(), e, s.scratch.data())}});
    if (p.dsrc_to_dx.prim) p.dsrc_to_dx.run(s.stream, dsrc, dx);
  }
  float* src = p.x_to_bsrc.run(s.stream, x, s.src.data());
  float* dwb = p.bw_to_user.prim ? s.dw.data() : dw;
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(p.bwd_w_pd.src_desc(), e, src)},
      {DNNL_ARG_DIFF_DST, ddst_m},
      {DNNL_ARG_DIFF_WEIGHTS, memory(p.bwd_w_pd.diff_weights_desc(), e, dwb)},
      {DNNL_ARG_SCRATCHPAD, memory(p.bwd_w_pd.scratchpad_desc(), e, s.scratch.data())}};
  if (impl_->g.bias) args.emplace(DNNL_ARG_DIFF_BIAS, memory(p.bwd_w_pd.diff_bias_desc(), e, db));
  p.bwd_w->execute(s.stream, args);
  if (p.bw_to_user.prim) p.bw_to_user.run(s.stream, dwb, dw);
}

}  // namespace augflow::model

#else  // without oneDNN: Conv2d keeps its im2col + GEMM path

namespace augflow::model {
struct DnnlConv::Impl {};
bool DnnlConv::available() { return false; }
DnnlConv::DnnlConv(const ConvGeometry&) { throw Error("augflow was built without oneDNN"); }
DnnlConv::~DnnlConv() = default;
bool DnnlConv::prepare(std::span<const int>, int, const float*, bool) { return false; }
void DnnlConv::forward(int, int, const float*, const float*, float*) {}
void DnnlConv::backward(int, int, const float*, const float*, float*, float*, float*) {}
}  // namespace augflow::model

#endif
