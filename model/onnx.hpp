// ONNX export and import of augflow models, written and read with Debian's ONNX library (the
// protobuf classes of onnx-ml.proto, and onnx::checker for what is written).
//
// Export writes the test-time form of the network (opset 13, IR version 7, float32, input
// "input" N x C x H x W with a dynamic batch dimension N, output "logits" N x classes):
//   convNkK[sS][pP]  Conv (weight out x C x K x K, bias)
//   bn               BatchNormalization with the running statistics, epsilon 1e-5
//   relu, lreluA, tanh   Relu, LeakyRelu(alpha=A), Tanh
//   poolK[sS][pP]    MaxPool;   avgpoolK  AveragePool (stride K)
//   gap              GlobalAveragePool
//   flatten          Reshape to (N, -1)
//   fcN              Flatten (when its input is spatial) + Gemm(transB=1), weight N x in
//   dropP            Dropout with ratio P (the identity at test time)
//   dcP              Identity named "dcP" (DropConnect uses the weights unchanged at test time)
//   resN[sS][b0]     Conv-BN-Relu-Conv-BN (+ Mul by the survival probability under stochastic
//                    depth), a shortcut (the input, or a 1x1 Conv-BN projection), Add, Relu;
//                    without BN (b0) the convolutions carry biases
// A spatial layer after an fc gets a Reshape to N x C x 1 x 1 first.
// Metadata travels in metadata_props (keys in the README, "Using a trained model"): the class
// names, the input shape, the model and training specs, and what the caller adds (the
// normalisation, from pipeline/model_io.cpp, which knows the augmentation spec language).
//
// Import reads an ONNX classifier into augflow's layers (so it can be evaluated or trained
// further): the graphs export writes, bit for bit, and ResNet-style graphs as PyTorch exports
// them (torchvision's resnet18/34: 7x7 stride-2 stem, 3x3 stride-2 max pool with padding, basic
// blocks with 1x1 projection shortcuts, batch norm kept or folded into the convolutions, global
// average pool, Gemm head; a final Softmax is dropped, as augflow's outputs are logits). The
// graph is walked from its input: a value with one consumer continues a chain of layers, a
// value with two starts a residual block. What does not fit is a DataError naming the node,
// its op type and what is supported; a malformed file never crashes the reader (fuzzed in
// fuzz/fuzz_onnx.cpp).
//
// API: public, part of augflow::model; installed as <augflow/model/onnx.hpp>.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "augflow/model/checkpoint.hpp"

namespace augflow::model {

inline constexpr int kOnnxOpset = 13;
inline constexpr int kOnnxIrVersion = 7;
/// The input side assumed for an ONNX file whose input height and width are symbolic and whose
/// metadata does not say (ImageNet's crop).
inline constexpr int kOnnxDefaultInputSize = 224;

using OnnxMetadata = std::map<std::string, std::string>;

/// The serialized ONNX model of `checkpoint`'s network, after onnx::checker accepts it.
/// `metadata` is added to the model's own keys (model_spec, class_names, input_channels,
/// input_height, input_width, augmentation, seed, epoch). Throws Error when the checker
/// rejects the graph (an internal error) and ShapeError/SpecError for a broken checkpoint.
std::string onnx_model_bytes(const Checkpoint& checkpoint, const OnnxMetadata& metadata = {});

/// Writes onnx_model_bytes(...) to `path` atomically. Throws IoError naming the file.
void export_onnx(const Checkpoint& checkpoint, const OnnxMetadata& metadata, const std::string& path);

struct OnnxModel {
  /// The network as a checkpoint: spec, input shape, classes, parameters and batch-norm state;
  /// class_names, augmentation, seed and epoch from the metadata when present (class names
  /// "0".."K-1" otherwise, augmentation empty).
  Checkpoint checkpoint;
  OnnxMetadata metadata;  ///< every metadata_props entry
  std::string producer;   ///< producer_name and version, e.g. "pytorch 1.13.1"
};

/// Reads an ONNX file. IoError when it cannot be read; DataError naming the file (and the node,
/// its op type and what is supported) when it is not a model augflow can represent.
OnnxModel import_onnx(const std::string& path);

/// The same from the file's bytes (the fuzzer calls it directly); `path` names the source.
OnnxModel import_onnx_bytes(std::span<const std::uint8_t> bytes, const std::string& path);

}  // namespace augflow::model
