// Checkpoints: a model's parameters, batch-norm state, optimizer state and the facts needed to
// resume or evaluate it, in one versioned, checksummed binary file.
//
// File layout (all integers little-endian):
//   offset 0   12 bytes  magic "AUGFLOW\0CKPT"
//          12  u32       format version (kCheckpointVersion)
//          16  u64       H, the header's length in bytes
//          24  u64       D, the tensor data's length in bytes
//          32  H bytes   header, UTF-8 JSON (below)
//      32 + H  D bytes   tensor data: float32 little-endian, in the order of header "tensors"
//  32 + H + D  u32       CRC-32 (zlib) of bytes 12 .. 32 + H + D (everything after the magic)
// The header: {"model": spec text, "input": [C,H,W], "classes": n, "class_names": [...],
//   "epoch", "step", "seed", "augmentation", "optimizer", "meta": {...},
//   "tensors": [{"name", "group": "params"|"state"|"optimizer", "shape": [N,C,H,W]}, ...]}.
//
// Contract:
// - save_checkpoint never leaves a half-written file under the target name: it writes a
//   temporary file in the same folder, flushes and fsyncs it, then renames it over the target.
// - load_checkpoint never crashes or reads out of bounds on a damaged file: every length is
//   checked against the file's size before anything is allocated, then the checksum, then the
//   header. IoError when the file cannot be opened or read; DataError (naming the file) when it
//   is not a valid checkpoint of this version.
// - Randomness in augflow is counter-based (common/rng.hpp): (seed, epoch, step) is the whole
//   generator state, so resuming needs no other RNG state.
//
// API: public, part of augflow::model; installed as <augflow/model/checkpoint.hpp>.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "augflow/model/tensor.hpp"

namespace augflow::model {

class Net;

inline constexpr std::uint32_t kCheckpointVersion = 1;

struct Checkpoint {
  std::string model_spec;                ///< compact text (print_model_spec)
  Shape input;                           ///< C x H x W of one sample (n unused)
  int classes = 0;
  std::vector<std::string> class_names;  ///< may be empty
  std::int64_t epoch = 0;                ///< completed epochs
  std::int64_t step = 0;                 ///< global training step (batches seen)
  std::uint64_t seed = 0;                ///< the run's seed
  std::string augmentation;              ///< augmentation spec text (may be empty)
  std::string optimizer;                 ///< optimizer name/spec (may be empty)
  nlohmann::json meta = nlohmann::json::object();  ///< free-form (metrics, command line, ...)
  std::map<std::string, Tensor> params;           ///< trained parameters by name ("3.weight")
  std::map<std::string, Tensor> state;            ///< untrained state (batch-norm statistics)
  std::map<std::string, Tensor> optimizer_state;  ///< e.g. "3.weight.m" for Adam's moments
};

/// Writes `checkpoint` to `path` atomically (temp file + fsync + rename). Throws IoError naming
/// the path and the system's reason; the target is then unchanged and no temp file remains.
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);

/// Reads a checkpoint. IoError when the file is missing or unreadable; DataError naming the file
/// when it is not an augflow checkpoint, has another format version, is truncated, fails its
/// checksum ("corrupt") or has an inconsistent header.
Checkpoint load_checkpoint(const std::string& path);

/// The same from the file's bytes (load_checkpoint reads the file and calls this; the fuzzer
/// calls it directly). `path` only names the source in errors. Throws DataError as above.
Checkpoint load_checkpoint_bytes(std::span<const std::uint8_t> bytes, const std::string& path);

/// Copies the network's spec (printed), input shape, class count, parameters and state into
/// `checkpoint` (replacing its params and state; other fields are left alone). State tensors are
/// named "<layer index>.state<j>", j counting the layer's state() entries.
void store_net(const Net& net, Checkpoint& checkpoint);

/// Copies the checkpoint's parameters and state into `net`. Checks everything before copying
/// anything: a missing, extra or differently shaped tensor is a ShapeError such as
/// "checkpoint has 0.weight 32x1x3x3 but the model has 16x1x3x3".
void restore_net(Net& net, const Checkpoint& checkpoint);

}  // namespace augflow::model
