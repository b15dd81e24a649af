// Weight penalties added to the data loss: the training objective is
//
//     J(W) = (1/N) Σ_i L_i(W) + λ R(W)
//
// where R sums over the Params with regularized == true only (weights of conv and fc layers;
// biases and batch-norm scale/shift are not penalised by default: shrinking them does not
// reduce the model's capacity, it only biases its outputs).
//
//     L2:           R(W) = Σ W²                  ∂(λR)/∂W = 2λW
//     L1:           R(W) = Σ |W|                 ∂(λR)/∂W = λ sign(W), with sign(0) = 0
//     elastic net:  R(W) = Σ (β W² + |W|)        ∂(λR)/∂W = λ (2βW + sign(W))
//
// L2 and weight decay. With plain SGD and learning rate α the L2 gradient gives
//     W ← W − α(∇L + 2λW) = W(1 − 2αλ) − α∇L,
// i.e. L2 regularisation with strength λ IS weight decay with rate d = 2λ (per unit learning
// rate). The equivalence breaks for adaptive methods: Adam divides the whole gradient, the
// 2λW term included, by sqrt(v̂), so weights with large gradient history are decayed LESS than
// others. AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019)
// therefore decouples the decay from the gradient, W ← W − α·d·W − α·Adam(∇L), so every weight
// shrinks at the same relative rate; see model/optim.hpp. Use either λ (here) or AdamW's decay,
// normally not both.
//
// The penalty is computed over the current values, in double, in the order of the params list
// (deterministic), and its gradient is ADDED to each Param's grad, after backward and before
// the optimizer step (which zeroes the grads).
//
// API: public, part of augflow::model; installed as <augflow/model/regularizer.hpp>.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "augflow/model/layer.hpp"

namespace augflow::model {

enum class RegularizerKind { none, l2, l1, elastic };

struct Regularizer {
  RegularizerKind kind = RegularizerKind::none;
  double lambda = 0.0;  ///< λ >= 0: strength of the penalty in the objective
  double beta = 1.0;    ///< elastic net only: weight β >= 0 of the squared term
  bool operator==(const Regularizer&) const = default;
};

/// λR(W) over the regularized params, and ADDS ∂(λR)/∂W into each regularized Param's grad.
/// Params with regularized == false are neither counted nor touched. Returns 0 for `none`.
double apply_regularizer(const Regularizer& reg, const std::vector<Param*>& params);

/// λR(W) only (for logging the objective without changing gradients).
double regularizer_penalty(const Regularizer& reg, const std::vector<Param*>& params);

/// Parses "none", "l2:LAMBDA", "l1:LAMBDA", "elastic:LAMBDA" (β = 1) or
/// "elastic:LAMBDA:BETA", with LAMBDA, BETA >= 0 finite numbers ("l2:5e-4").
/// Throws ConfigError naming the text and the accepted forms.
Regularizer parse_regularizer(std::string_view text);

/// Canonical text: parse_regularizer(print_regularizer(r)) == r.
std::string print_regularizer(const Regularizer& reg);

}  // namespace augflow::model
