// The data loss of training: softmax cross-entropy over the logits of the last layer, plus the
// softmax probabilities and top-k correctness that evaluation needs.
//
// Contract:
// - Logits are N x K x 1 x 1 (K classes, as Net::forward returns them); labels are N class ids
//   in [0, K). Any other shape, a label count other than N, or a label outside [0, K) throws
//   ShapeError naming the sample and the class count.
// - The loss is the MEAN over the batch: L = -(1/N) Σ_i log softmax(z_i)[y_i]. It is computed
//   stably, as log Σ_j exp(z_ij - m_i) - (z_iy - m_i) with m_i the row maximum, in double.
// - dlogits = (softmax(z) - onehot(y)) / N, so that backward of the mean loss needs no further
//   scaling. dlogits is resized to the logits' shape.
// - Label smoothing (Szegedy et al. 2016, "Rethinking the Inception architecture"), training
//   only: with eps in (0, 1) the target row is q = (1 − eps)·onehot(y) + eps/K, the loss
//   L = −(1/N) Σ_i Σ_j q_ij log softmax(z_i)[j] and dlogits = (softmax(z) − q) / N. eps = 0 is
//   the plain loss above, computed by the same operations (bit for bit). Evaluation keeps the
//   plain negative log-likelihood (the two-argument overload).
// - A non-finite loss is NOT an error here: a NaN or infinite logit gives a NaN or infinite loss
//   (and non-finite dlogits), returned as is. The training loop must test
//   std::isfinite(result.loss) and stop (divergence: lower the learning rate).
// - Ties in top-1/top-k go to the lower class index, so results are deterministic.
//
// API: public, part of augflow::model; installed as <augflow/model/loss.hpp>.
#pragma once

#include <span>
#include <vector>

#include "augflow/model/tensor.hpp"

namespace augflow::model {

struct LossResult {
  double loss = 0.0;  ///< mean cross-entropy over the batch; may be NaN/inf (see above)
  int correct = 0;    ///< samples whose top-1 prediction equals the label
};

/// Mean softmax cross-entropy of `logits` (N x K x 1 x 1) against `labels` (N ids in [0, K));
/// fills `dlogits` = (softmax - onehot) / N. With `label_smoothing` eps in [0, 1) the targets are
/// smoothed (see above). Throws ShapeError on a bad shape or label, ConfigError for eps outside
/// [0, 1).
LossResult softmax_cross_entropy(const Tensor& logits, std::span<const int> labels,
                                 Tensor& dlogits, double label_smoothing = 0.0);

/// The same, for a part of a batch (data-parallel training: `logits` hold this process's rows of a
/// batch of `batch_samples` samples): the mean and dlogits divide by batch_samples, and
/// `sample_losses` receives each row's loss (its term of the sum), for sums in a fixed order.
/// result.loss is this part's sum over batch_samples.
LossResult softmax_cross_entropy(const Tensor& logits, std::span<const int> labels, Tensor& dlogits,
                                 double label_smoothing, int batch_samples, std::vector<double>& sample_losses);
/// The same loss and top-1 count without the gradient (evaluation).
LossResult softmax_cross_entropy(const Tensor& logits, std::span<const int> labels);

/// The index of the row's largest of `classes` scores: ties go to the lower index, a NaN never
/// wins (the top-1 prediction every accuracy here counts).
int top1(const float* row, int classes);
/// Row-wise softmax probabilities (stable: the row maximum is subtracted first); `probs` is
/// resized to the logits' shape. Evaluation averages these over views or ensemble members.
void softmax(const Tensor& logits, Tensor& probs);

/// Mean negative log-likelihood of `probs` (N x K x 1 x 1, rows summing to 1, e.g. averaged
/// softmax outputs of an ensemble) against `labels`, with the top-1 count. A probability of 0
/// for the true class gives an infinite loss (returned as is).
LossResult nll_of_probabilities(const Tensor& probs, std::span<const int> labels);

/// Number of samples whose label is among the k highest scores of its row (scores are logits
/// or probabilities: the ranking is the same). k >= 1; k >= K counts every sample. The rank of
/// the label is the number of classes scoring higher, plus those scoring equal with a lower
/// index. Throws ConfigError when k < 1, ShapeError on bad shapes or labels.
int count_top_k(const Tensor& scores, std::span<const int> labels, int k);

}  // namespace augflow::model
