// Model specs: the compact string form, its JSON form and the presets, parsed in this one
// place (the model's counterpart of augment/spec.cpp).
//
// Compact form: tokens joined by '-', e.g. "conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-gap-fc10".
//   convNkK[sS][pP]  convolution, N output channels, K x K kernel, stride S (1), padding P (0)
//   fcN              fully-connected (linear) layer with N outputs (flattens its input)
//   bn               batch norm (per channel after a conv, per feature after an fc)
//   relu | lrelu[A] | tanh   activations (leaky slope A, default 0.01)
//   poolK[sS][pP]    max-pool K x K, stride S (K), padding P (0, at most K/2; it counts as
//                    -infinity): PyTorch's MaxPool2d(K, S, P), e.g. pool2, pool3s2p1
//   avgpoolK         average-pool K x K, stride K
//   gap              global average pool (N x C x H x W -> N x C)
//   flatten          N x C x H x W -> N x (C*H*W) (fc does it implicitly)
//   dropP            inverted dropout with drop probability P (keep 1-P)
//   dcP              DropConnect with drop probability P on the weights of the next fc
//   resN[sS][b0]     residual basic block (conv3-bn-relu-conv3-bn + shortcut, then relu), N
//                    channels, stride S; a 1x1 projection shortcut (+ bn) when shape changes.
//                    b0: without batch norm, every conv with a bias (conv3-relu-conv3 +
//                    shortcut, then relu): a ResNet block whose batch norm was folded into its
//                    convs, as PyTorch's ONNX export writes it. b1 (with bn) is the default.
//   sdP              stochastic depth: survival probability of the LAST residual block is P,
//                    decaying linearly from 1 for the first (Huang et al. 2016); applies to
//                    every res block of the model
// "fc2" alone is a valid model (a linear classifier). The last layer's outputs are the logits;
// a final fc whose size differs from the data set's class count is an error at build time.
// Presets: twolayer (fc50-relu-fcC, the lecture's two-layer net), mlp, cnn-small, resnet-mini;
// C is the class count of the data.
//
// API: public, part of augflow::model; installed as <augflow/model/config.hpp>.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace augflow::model {

inline constexpr int kModelSpecVersion = 1;

/// One token of a model spec: its kind and numeric arguments.
struct LayerSpec {
  std::string kind;                      ///< "conv", "fc", "bn", "relu", "lrelu", "tanh", "pool",
                                         ///< "avgpool", "gap", "flatten", "drop", "dc", "res"
  std::map<std::string, double> args;    ///< e.g. {"out",32},{"k",3},{"s",1},{"p",1}; {"p",0.5} for drop;
                                         ///< {"out",64},{"s",2},{"bn",0} for res64s2b0
  bool operator==(const LayerSpec&) const = default;
};

struct ModelSpec {
  std::vector<LayerSpec> layers;
  double survival = 1.0;  ///< stochastic depth: survival probability of the last res block (sdP)
  bool operator==(const ModelSpec&) const = default;
};

/// Parses the compact form, a preset name, or JSON ({"version":1,"layers":[{"kind":"conv",...}]}).
/// `classes` fills the presets' last layer. Throws SpecError naming the token and position.
ModelSpec parse_model_spec(std::string_view text, int classes);
/// Canonical compact text: parse_model_spec(print(s)) == s.
std::string print_model_spec(const ModelSpec& spec);
nlohmann::json model_spec_to_json(const ModelSpec& spec);

}  // namespace augflow::model
