// The batch-parallel helper's floating-point contract: chunks run with the caller's mode on
// every thread, and FlushDenormals turns subnormal floats into zeros while it lives. And batch
// partitions: a batch's chunks spread over several "processes" (threads here, standing in for
// the processes of an MPI job) give the gradients and statistics of the whole batch, bit for bit.
#include <atomic>
#include <barrier>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <oneapi/tbb/task_arena.h>

#include "model/config.hpp"
#include "model/loss.hpp"
#include "model/net.hpp"
#include "model/parallel.hpp"
#include "tests/fixtures.hpp"

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

/// The chunk exchange between `ranks` threads: every call is a collective (all threads make
/// the same calls in the same order), each thread's part posted on a shared board between two
/// barriers.
class Board {
 public:
  explicit Board(int ranks) : parts(static_cast<std::size_t>(ranks)), sync(ranks) {}
  std::vector<std::vector<char>> parts;
  std::barrier<> sync;
};

class ThreadExchange final : public ChunkExchange {
 public:
  ThreadExchange(Board& board, int rank) : board_(board), rank_(rank) {}
  void gather(const float* mine, std::size_t width, float* all) override { gather_bytes(mine, width * 4, all); }
  void gather(const double* mine, std::size_t width, double* all) override { gather_bytes(mine, width * 8, all); }
  /// Every process combines the whole width (the contract's slices, all in one).
  void reduce(const float* mine, std::size_t width, const std::vector<std::size_t>& nodes_per_rank,
              const std::function<void(const float*, std::size_t, float*)>& combine, float* sums) override {
    std::size_t nodes = 0;
    for (std::size_t n : nodes_per_rank) nodes += n;
    std::vector<float> all(nodes * width);
    gather_bytes(mine, nodes_per_rank[rank_] * width * 4, all.data(), true);
    combine(all.data(), width, sums);
  }
  std::size_t held = 0;  ///< chunks this thread holds

 private:
  /// Posts `mine` (per chunk held, or with `whole` the given bytes) and collects every part.
  void gather_bytes(const void* mine, std::size_t bytes_per_chunk, void* all, bool whole = false) {
    const std::size_t bytes = whole ? bytes_per_chunk : held * bytes_per_chunk;
    board_.parts[rank_].assign(static_cast<const char*>(mine), static_cast<const char*>(mine) + bytes);
    board_.sync.arrive_and_wait();
    char* out = static_cast<char*>(all);
    for (const auto& part : board_.parts) out = std::copy(part.begin(), part.end(), out);
    board_.sync.arrive_and_wait();
  }

  Board& board_;
  int rank_;
};

struct StepResult {
  std::vector<std::vector<float>> grads, state;
};

/// One training step of `spec` on the rows of a batch of 12 positions that `kept` lists (the
/// others unusable), by the chunks [first, last) of its 6 (uniform(12)), with `exchange` for the
/// rest (null: every chunk here).
StepResult step_on_chunks(const std::string& spec, const std::vector<int>& kept, int first, int last,
                          ThreadExchange* exchange, int ranks = 1) {
  constexpr int kPositions = 12, kClasses = 3;
  const Shape input{0, 3, 8, 8};
  Net net(parse_model_spec(spec, kClasses), input, kClasses);
  net.initialize(21);
  const Tensor batch = test::random_tensor({kPositions, 3, 8, 8}, 5);
  const ChunkLayout uniform = ChunkLayout::uniform(kPositions);
  BatchPartition partition;
  partition.chunks = uniform.count;
  partition.first = first;
  partition.samples.assign(uniform.count, 0);
  partition.bounds = {0};
  std::vector<int> rows;
  for (int c = 0; c < uniform.count; ++c) {
    for (int position : kept)
      if (position >= uniform.begin(c) && position < uniform.end(c)) {
        ++partition.samples[c];
        if (c >= first && c < last) rows.push_back(position);
      }
    if (c >= first && c < last) partition.bounds.push_back(static_cast<int>(rows.size()));
  }
  partition.exchange = exchange;
  if (exchange) {
    exchange->held = static_cast<std::size_t>(last - first);
    for (int r = 0; r <= ranks; ++r) partition.owners.push_back(uniform.count * r / ranks);
  }
  Tensor x({static_cast<int>(rows.size()), 3, 8, 8});
  std::vector<int> labels;
  std::vector<std::uint64_t> ids;
  const std::size_t per = x.shape().per_sample();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(x.data() + i * per, batch.data() + rows[i] * per, per * sizeof(float));
    labels.push_back(rows[i] % kClasses);
    ids.push_back(static_cast<std::uint64_t>(100 + rows[i]));
  }
  const PartitionScope scope(partition);
  Tensor dlogits;
  std::vector<double> losses;
  const auto& logits = net.forward(x, {Mode::train, 9, 4, 0, &ids});
  softmax_cross_entropy(logits, labels, dlogits, 0.1, partition.total_samples(), losses);
  net.backward(dlogits);
  StepResult result;
  for (const Param* p : net.params()) result.grads.emplace_back(p->grad.data(), p->grad.data() + p->grad.size());
  for (const Tensor* t : net.state()) result.state.emplace_back(t->data(), t->data() + t->size());
  return result;
}

// Batch norm's statistics and backward sums, every weight gradient (conv, fc with DropConnect,
// batch norm), dropout and stochastic depth: the chunks of a batch computed by 2 or 3 "processes"
// give the bits of the whole batch in one, also with a chunk whose samples were all unusable.
TEST(Parallel, ChunksSpreadOverProcessesGiveTheWholeBatchsGradients) {
  const std::string spec = "conv4k3p1-bn-relu-res4-res8s2-gap-drop0.3-dc0.2-fc6-relu-fc3-sd0.7";
  const std::vector<int> kept{0, 1, 2, 3, 6, 8, 9, 10, 11};  // positions 4, 5 (chunk 2) and 7 unusable
  const StepResult whole = step_on_chunks(spec, kept, 0, 6, nullptr);
  for (int ranks : {2, 3}) {
    SCOPED_TRACE(std::to_string(ranks) + " processes");
    Board board(ranks);
    std::vector<StepResult> results(static_cast<std::size_t>(ranks));
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r)
      threads.emplace_back([&, r] {
        ThreadExchange exchange(board, r);
        results[r] = step_on_chunks(spec, kept, 6 * r / ranks, 6 * (r + 1) / ranks, &exchange, ranks);
      });
    for (auto& t : threads) t.join();
    for (const auto& result : results) {
      ASSERT_EQ(result.grads.size(), whole.grads.size());
      for (std::size_t i = 0; i < whole.grads.size(); ++i) EXPECT_EQ(result.grads[i], whole.grads[i]) << "gradient " << i;
      for (std::size_t i = 0; i < whole.state.size(); ++i) EXPECT_EQ(result.state[i], whole.state[i]) << "state " << i;
    }
  }
}

}  // namespace
}  // namespace augflow::model
