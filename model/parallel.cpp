#include "model/parallel.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace augflow::model {
namespace {
thread_local const BatchPartition* current = nullptr;
}  // namespace

const BatchPartition* active_partition() { return current; }

PartitionScope::PartitionScope(const BatchPartition& partition) : saved_(current) {
  if (partition.held() > ChunkLayout::kLargestChunkCount || partition.chunks > ChunkLayout::kLargestChunkCount ||
      partition.first < 0 || partition.first + partition.held() > partition.chunks ||
      static_cast<int>(partition.samples.size()) != partition.chunks)
    throw std::logic_error("PartitionScope: inconsistent batch partition");
  current = &partition;
}

PartitionScope::~PartitionScope() { current = saved_; }

ChunkLayout ChunkLayout::uniform(int samples, int chunks) {
  if (chunks < 1 || chunks > kLargestChunkCount)
    throw std::invalid_argument("ChunkLayout: " + std::to_string(chunks) + " chunks, not in [1, " +
                                std::to_string(kLargestChunkCount) + "]");
  ChunkLayout layout;
  layout.n = samples;
  const int size = samples <= 0 ? 1 : (samples + chunks - 1) / chunks;
  layout.count = samples <= 0 ? 0 : (samples + size - 1) / size;
  for (int c = 0; c <= layout.count; ++c) layout.bounds_[c] = std::min(samples, c * size);
  return layout;
}

ChunkLayout::ChunkLayout(int samples) {
  const BatchPartition* p = current;
  if (p == nullptr || p->local_samples() != samples || (p->held() == 0 && samples == 0 && p->chunks == 0)) {
    *this = uniform(samples);
    return;
  }
  n = samples;
  count = p->held();
  for (int c = 0; c <= count; ++c) bounds_[c] = p->bounds[c];
  partition_ = p;
}


namespace {

/// An aligned subtree of the chunk tree: chunks [first, first + size), size a power of two and
/// first a multiple of it.
struct Subtree {
  int first = 0;
  int size = 1;
};

/// The maximal aligned subtrees that make up chunks [first, last), in chunk order.
std::vector<Subtree> subtrees_of(int first, int last) {
  std::vector<Subtree> cover;
  while (first < last) {
    int size = 1;
    while (first % (2 * size) == 0 && first + 2 * size <= last) size *= 2;
    cover.push_back({first, size});
    first += size;
  }
  return cover;
}

/// The additions of the tree over slots [0, size) (size a power of two): (to, from, add) for
/// slot `to` += slot `from` when both hold a sum, or a move when only `from` does. `present`
/// says which slots hold one, and is updated as the plan runs.
struct Step {
  int to, from;
  bool add;
};
std::vector<Step> tree_plan(std::vector<char>& present, int size) {
  std::vector<Step> plan;
  for (int stride = 1; stride < size; stride *= 2)
    for (int i = 0; i + stride < size; i += 2 * stride) {
      const int j = i + stride;
      if (!present[j]) continue;
      plan.push_back({i, j, present[i] != 0});
      present[i] = 1;
    }
  return plan;
}

/// Runs `plan` over slots of `width` floats each (element blocks in parallel: every element's
/// additions are its own), leaving slot 0's sum in `sums` (zeros when no slot held one).
void run_plan(const std::vector<Step>& plan, bool any, float* slots, std::size_t width, float* sums) {
  constexpr std::size_t kBlock = 4096;
  const int blocks = static_cast<int>((width + kBlock - 1) / kBlock);
  for_each_range(blocks, width * (plan.size() + 1), [&](int first, int last) {
    const std::size_t begin = static_cast<std::size_t>(first) * kBlock;
    const std::size_t end = std::min(width, static_cast<std::size_t>(last) * kBlock);
    for (const Step& step : plan) {
      float* to = slots + static_cast<std::size_t>(step.to) * width;
      const float* from = slots + static_cast<std::size_t>(step.from) * width;
      if (step.add)
        for (std::size_t k = begin; k < end; ++k) to[k] += from[k];
      else
        std::copy(from + begin, from + end, to + begin);
    }
    if (any)
      std::copy(slots + begin, slots + end, sums + begin);
    else
      std::fill(sums + begin, sums + end, 0.0f);
  });
}

int power_of_two_at_least(int n) {
  int size = 1;
  while (size < n) size *= 2;
  return size;
}

}  // namespace

void sum_chunks(const ChunkLayout& layout, float* partials, std::size_t width, float* sums) {
  const BatchPartition* p = layout.partition();
  const std::vector<int> samples = chunk_samples(layout);
  if (p == nullptr || p->exchange == nullptr) {
    const int size = power_of_two_at_least(layout.count);
    std::vector<char> present(static_cast<std::size_t>(size), 0);
    for (int c = 0; c < layout.count; ++c) present[c] = samples[c] > 0;
    const bool any = std::find(present.begin(), present.end(), 1) != present.end();
    run_plan(tree_plan(present, size), any, partials, width, sums);
    return;
  }
  // This process's subtrees, each added in place in `partials` (at its first chunk's slot).
  const int ranks = static_cast<int>(p->owners.size()) - 1;
  std::vector<float> mine;
  std::vector<std::size_t> nodes_per_rank(static_cast<std::size_t>(ranks));
  std::vector<Subtree> all_subtrees;
  for (int r = 0; r < ranks; ++r) {
    const auto cover = subtrees_of(p->owners[r], p->owners[r + 1]);
    nodes_per_rank[r] = cover.size();
    all_subtrees.insert(all_subtrees.end(), cover.begin(), cover.end());
    if (p->owners[r] != p->first) continue;
    mine.resize(cover.size() * width);
    for (std::size_t t = 0; t < cover.size(); ++t) {
      const int local = cover[t].first - p->first;
      std::vector<char> present(static_cast<std::size_t>(cover[t].size));
      for (int c = 0; c < cover[t].size; ++c) present[c] = p->samples[cover[t].first + c] > 0;
      const bool any = std::find(present.begin(), present.end(), 1) != present.end();
      run_plan(tree_plan(present, cover[t].size), any, partials + static_cast<std::size_t>(local) * width, width,
               mine.data() + t * width);
    }
  }
  // Every process's subtree sums of one slice go to their chunk's slot; the tree above them is
  // the one a single process runs, so the additions are the same.
  const int size = power_of_two_at_least(p->chunks);
  std::vector<char> subtree_present(all_subtrees.size());
  for (std::size_t t = 0; t < all_subtrees.size(); ++t)
    for (int c = 0; c < all_subtrees[t].size; ++c)
      subtree_present[t] = subtree_present[t] || p->samples[all_subtrees[t].first + c] > 0;
  std::vector<float> slots;
  const auto combine = [&](const float* nodes, std::size_t slice, float* out) {
    slots.assign(static_cast<std::size_t>(size) * slice, 0.0f);
    std::vector<char> present(static_cast<std::size_t>(size), 0);
    for (std::size_t t = 0; t < all_subtrees.size(); ++t) {
      if (!subtree_present[t]) continue;
      std::copy(nodes + t * slice, nodes + (t + 1) * slice, slots.data() + static_cast<std::size_t>(all_subtrees[t].first) * slice);
      present[all_subtrees[t].first] = 1;
    }
    const bool any = std::find(present.begin(), present.end(), 1) != present.end();
    run_plan(tree_plan(present, size), any, slots.data(), slice, out);
  };
  p->exchange->reduce(mine.data(), width, nodes_per_rank, combine, sums);
}

std::vector<double> all_chunks(const ChunkLayout& layout, const std::vector<double>& mine, std::size_t width) {
  const BatchPartition* p = layout.partition();
  if (p == nullptr || p->exchange == nullptr) return mine;
  std::vector<double> all(static_cast<std::size_t>(p->chunks) * width);
  p->exchange->gather(mine.data(), width, all.data());
  return all;
}

std::vector<int> chunk_samples(const ChunkLayout& layout) {
  if (layout.partition() != nullptr) return layout.partition()->samples;
  std::vector<int> samples(static_cast<std::size_t>(layout.count));
  for (int c = 0; c < layout.count; ++c) samples[c] = layout.end(c) - layout.begin(c);
  return samples;
}

}  // namespace augflow::model
