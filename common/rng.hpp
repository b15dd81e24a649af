// Counter-based random numbers, shared by augmentation (augment/) and the model (model/:
// dropout masks, DropConnect, stochastic depth).
//
// Contract: the generator of one sample is a pure function of (run seed, epoch, sample index,
// stream). Its draws are a hash of that key and a draw counter (SplitMix64's finaliser), so a
// sample's parameters are bit-identical whichever thread runs it and in whatever order samples
// are processed. There is no global or shared generator anywhere in augflow.
//
// API: public, part of augflow::common; installed as <augflow/common/rng.hpp>.
#pragma once

#include <cstdint>

namespace augflow {

/// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Identifies one sample's random stream.
struct SampleKey {
  std::uint64_t seed = 0;
  std::uint64_t epoch = 0;
  std::uint64_t index = 0;
};

class Rng {
 public:
  /// `stream` separates independent uses for the same sample (e.g. transform position).
  explicit Rng(SampleKey key, std::uint64_t stream = 0)
      : key_(mix64(mix64(mix64(mix64(key.seed) ^ key.epoch) ^ key.index) ^ stream)) {}

  /// Raw 64 random bits; the n-th call returns hash(key, n).
  std::uint64_t next_u64() { return mix64(key_ + 0xD1B54A32D192ED03ull * ++counter_); }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  /// Uniform in [lo, hi) (returns lo when lo == hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  /// Uniform integer in [lo, hi], both inclusive (Lemire's multiply-shift; bias < 2^-32).
  std::int64_t uniform_int(std::int64_t lo, std::int64_t hi) {
    const auto range = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo) + 1u;
    if (range == 0) return static_cast<std::int64_t>(next_u64());  // the full 64-bit range
    const auto product = static_cast<unsigned __int128>(next_u64()) * range;
    return lo + static_cast<std::int64_t>(product >> 64);
  }

  /// True with probability p.
  bool bernoulli(double p) { return uniform() < p; }

  /// Standard normal variate (Box-Muller; uses two draws).
  double normal();

  /// How many draws were made: lets tests check that a transform draws a fixed amount.
  std::uint64_t draws() const { return counter_; }

 private:
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

}  // namespace augflow
