#include "model/parallel.hpp"

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

/// Chunk c of the batch has samples: under a partition, from its table; else every uniform chunk does.
bool has_samples(const ChunkLayout& layout, int chunk) {
  return layout.partition() == nullptr || layout.partition()->samples[chunk] > 0;
}

}  // namespace

void sum_chunks(const ChunkLayout& layout, const float* partials, std::size_t width, float* sums) {
  const BatchPartition* p = layout.partition();
  if (p != nullptr && p->exchange != nullptr) {
    p->exchange->sum_chunks(partials, width, p->samples, sums);
    return;
  }
  // Element blocks in parallel (each element's additions are its own, in chunk order).
  constexpr std::size_t kBlock = 4096;
  const int blocks = static_cast<int>((width + kBlock - 1) / kBlock);
  for_each_range(blocks, width * static_cast<std::size_t>(layout.count), [&](int first, int last) {
    const std::size_t begin = static_cast<std::size_t>(first) * kBlock;
    const std::size_t end = std::min(width, static_cast<std::size_t>(last) * kBlock);
    std::fill(sums + begin, sums + end, 0.0f);
    for (int c = 0; c < layout.count; ++c) {
      if (!has_samples(layout, c)) continue;
      const float* part = partials + static_cast<std::size_t>(c) * width;
      for (std::size_t k = begin; k < end; ++k) sums[k] += part[k];
    }
  });
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
