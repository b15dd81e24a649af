// The order in which one epoch visits the samples.
//
// API: public, part of augflow::loader; installed as <augflow/pipeline/sampler.hpp>.
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

/// The sample indices of one epoch: all indices shuffled by a Fisher-Yates pass whose draws
/// depend only on (seed, epoch), the shard's slice of that, then without the indices marked in
/// `excluded` (samples found unusable earlier). Slicing before excluding keeps the ranks'
/// slices disjoint and complete even though each rank finds only its own bad files (their
/// batch counts may then differ by those). Without shuffling, ascending order. Same arguments,
/// same order, on any machine and thread count. Throws ConfigError for a bad shard.
std::vector<std::uint64_t> epoch_order(std::size_t dataset_size, const std::vector<bool>& excluded,
                                       std::uint64_t seed, std::uint64_t epoch, bool shuffle,
                                       Shard shard = {});

}  // namespace augflow::pipeline
