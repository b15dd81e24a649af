#include "pipeline/sampler.hpp"

#include <string>
#include <utility>

#include "common/rng.hpp"
#include "common/error.hpp"

namespace augflow::pipeline {

std::vector<std::uint64_t> epoch_order(std::size_t dataset_size, const std::vector<bool>& excluded,
                                       std::uint64_t seed, std::uint64_t epoch, bool shuffle, Shard shard) {
  if (shard.count < 1 || shard.rank < 0 || shard.rank >= shard.count)
    throw ConfigError("shard rank " + std::to_string(shard.rank) + " of " + std::to_string(shard.count) +
                      " is not valid: need 0 <= rank < count");
  // Shuffle and slice ALL indices, then leave out the excluded ones: every rank finds other
  // bad files in its own slice, so excluding before slicing would make the ranks' slices
  // overlap and miss samples.
  std::vector<std::uint64_t> order(dataset_size);
  for (std::size_t i = 0; i < dataset_size; ++i) order[i] = i;
  if (shuffle) {
    // The sampler's own stream: index ~0 can never be a sample's, so it never collides with
    // the augmentation streams of (seed, epoch, index).
    Rng rng({seed, epoch, ~0ull});
    for (std::size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[static_cast<std::size_t>(rng.uniform_int(0, static_cast<std::int64_t>(i - 1)))]);
  }
  const std::size_t begin = dataset_size * shard.rank / shard.count;
  const std::size_t end = dataset_size * (shard.rank + 1) / shard.count;
  std::vector<std::uint64_t> slice;
  slice.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i)
    if (order[i] >= excluded.size() || !excluded[order[i]]) slice.push_back(order[i]);
  return slice;
}

}  // namespace augflow::pipeline
