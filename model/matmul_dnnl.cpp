#include "model/matmul_dnnl.hpp"

#include "common/error.hpp"

#if defined(AUGFLOW_HAVE_DNNL)

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "model/tensor.hpp"

namespace augflow::model {
namespace {

using dnnl::memory;

struct Matmul {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       std::int64_t, std::int64_t, bool, bool>;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace

bool dnnl_matmul_available() { return true; }

void dnnl_matmul(const MatrixRef& a, const MatrixRef& b, float* c, std::int64_t ldc, bool accumulate,
                 const float* bias) {
  if (a.cols != b.rows) throw Error("dnnl_matmul: inner dimensions differ");
  // One thread for oneDNN calls made by this thread (OpenMP's thread count is per thread).
  if (omp_get_max_threads() != 1) omp_set_num_threads(1);
  const std::int64_t m = a.rows, n = b.cols, k = a.cols;
  const Key key{m, n, k, a.row_stride, a.col_stride, b.row_stride, b.col_stride, ldc, accumulate, bias != nullptr};
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Matmul>> cache;
  Matmul* mm = nullptr;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    auto& slot = cache[key];
    if (!slot) {
      const auto f32 = memory::data_type::f32;
      const memory::desc ad({m, k}, f32, {a.row_stride, a.col_stride}), bd({k, n}, f32, {b.row_stride, b.col_stride}),
          cd({m, n}, f32, {ldc, 1}), biasd = bias ? memory::desc({1, n}, f32, {n, 1}) : memory::desc();
      dnnl::primitive_attr attr;
      // The caller's scratchpad (below), not one shared by all threads running the primitive.
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (accumulate) {
        dnnl::post_ops ops;
        ops.append_sum(1.0f);
        attr.set_post_ops(ops);
      }
      auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, biasd, cd), attr, cpu_engine());
      slot = std::make_unique<Matmul>(Matmul{pd, dnnl::matmul(pd)});
    }
    mm = slot.get();
  }
  thread_local FloatBuffer scratch;
  thread_local dnnl::stream stream(cpu_engine());
  const memory::desc sd = mm->pd.scratchpad_desc();
  if (scratch.size() * sizeof(float) < sd.get_size()) scratch.resize(sd.get_size() / sizeof(float) + 1);
  const auto& e = cpu_engine();
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(mm->pd.src_desc(), e, const_cast<float*>(a.data))},
                                       {DNNL_ARG_WEIGHTS, memory(mm->pd.weights_desc(), e, const_cast<float*>(b.data))},
                                       {DNNL_ARG_DST, memory(mm->pd.dst_desc(), e, c)},
                                       {DNNL_ARG_SCRATCHPAD, memory(sd, e, scratch.data())}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(mm->pd.bias_desc(), e, const_cast<float*>(bias)));
  mm->prim.execute(stream, args);
}

}  // namespace augflow::model

#else

namespace augflow::model {
bool dnnl_matmul_available() { return false; }
void dnnl_matmul(const MatrixRef&, const MatrixRef&, float*, std::int64_t, bool, const float*) {
  throw Error("augflow was built without oneDNN");
}
}  // namespace augflow::model

#endif
