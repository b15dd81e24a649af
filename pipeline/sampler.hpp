// The order in which one epoch visits the samples.
#pragma once

#include <cstdint>
#include <vector>

namespace augflow::pipeline {

/// Which slice of every epoch this process takes (data-parallel training over n processes):
/// rank r of n takes positions [r*len/n, (r+1)*len/n) of the epoch's permutation.
struct Shard {
  int rank = 0;
  int count = 1;
};

/// The sample indices of one epoch: the indices not marked in `excluded` (samples found
/// unusable earlier), shuffled by a Fisher-Yates pass whose draws depend only on (seed, epoch),
/// then the shard's slice. Without shuffling, ascending order. Same arguments, same order, on
/// any machine and thread count. Throws ConfigError for a bad shard.
std::vector<std::uint64_t> epoch_order(std::size_t dataset_size, const std::vector<bool>& excluded,
                                       std::uint64_t seed, std::uint64_t epoch, bool shuffle,
                                       Shard shard = {});

}  // namespace augflow::pipeline
