// The batch-parallel helper's floating-point contract: chunks run with the caller's mode on
// every thread, and FlushDenormals turns subnormal floats into zeros while it lives.
#include <atomic>
#include <cfloat>
#include <cmath>
#include <optional>

#include <gtest/gtest.h>
#include <oneapi/tbb/task_arena.h>

#include "model/parallel.hpp"

namespace augflow::model {
namespace {

/// A product whose exact result is subnormal (about 1e-39): 0 when flushing.
float tiny_product(float a, float b) {
  volatile float x = a, y = b;  // computed at run time, in the thread's mode
  return x * y;
}

TEST(Parallel, FlushDenormalsFlushesAndRestores) {
  const float tiny = 1e-20f, small = 1e-19f;
  ASSERT_EQ(std::fpclassify(tiny_product(tiny, small)), FP_SUBNORMAL);
  {
    const FlushDenormals flush;
    EXPECT_EQ(tiny_product(tiny, small), 0.0f);
  }
  EXPECT_EQ(std::fpclassify(tiny_product(tiny, small)), FP_SUBNORMAL) << "the caller's mode comes back";
}

TEST(Parallel, ChunksRunWithTheCallersMode) {
  tbb::task_arena arena(2);
  for (const bool flush : {true, false}) {
    std::atomic<int> flushed{0}, chunks{0};
    arena.execute([&] {
      std::optional<FlushDenormals> guard;
      if (flush) guard.emplace();
      // Enough work to go parallel; every chunk looks at the mode of the thread running it.
      for_each_chunk(64, std::size_t{1} << 20, [&](int, int, int) {
        flushed += tiny_product(1e-20f, 1e-19f) == 0.0f;
        ++chunks;
      });
    });
    EXPECT_EQ(chunks.load(), 8);
    EXPECT_EQ(flushed.load(), flush ? 8 : 0) << (flush ? "flushing" : "not flushing");
  }
}

}  // namespace
}  // namespace augflow::model
