#include "model/loss.hpp"

#include <cmath>
#include <vector>
#include <string>

#include "common/error.hpp"

namespace augflow::model {
namespace {

std::string shape_text(const Shape& s) {
  return std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" +
         std::to_string(s.w);
}

/// Checks that `t` is N x K x 1 x 1 with N = labels.size() and every label in [0, K); returns K.
int check_scores(const char* what, const Tensor& t, std::span<const int> labels,
                 bool need_samples) {
  const Shape& s = t.shape();
  if (s.c < 1 || s.h != 1 || s.w != 1 || s.n < 0 || t.size() != s.size()) {
    throw ShapeError(std::string(what) + ": expected N x K x 1 x 1 scores, got " +
                     shape_text(s));
  }
  if (need_samples && s.n == 0) {
    throw ShapeError(std::string(what) + ": the batch is empty (the mean loss is undefined)");
  }
  if (labels.size() != static_cast<std::size_t>(s.n)) {
    throw ShapeError(std::string(what) + ": " + std::to_string(labels.size()) +
                     " labels for a batch of " + std::to_string(s.n) + " samples");
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= s.c) {
      throw ShapeError(std::string(what) + ": label " + std::to_string(labels[i]) +
                       " of sample " + std::to_string(i) + " is outside [0, " +
                       std::to_string(s.c) + "): the model has " + std::to_string(s.c) +
                       " classes");
    }
  }
  return s.c;
}

/// Index of the first maximum (ties to the lower index). NaN entries never win a comparison.
int argmax(const float* row, int k) {
  int best = 0;
  for (int j = 1; j < k; ++j) {
    if (row[j] > row[best]) best = j;
  }
  return best;
}

/// The row maximum, ignoring NaN (a NaN row still yields a NaN loss through exp(NaN - m)).
float row_max(const float* row, int k) {
  float m = row[0];
  for (int j = 1; j < k; ++j) {
    if (row[j] > m || std::isnan(m)) m = row[j];
  }
  return m;
}

LossResult cross_entropy(const Tensor& logits, std::span<const int> labels, Tensor* dlogits,
                         double eps, int divisor = 0, std::vector<double>* sample_losses = nullptr) {
  if (!(eps >= 0.0 && eps < 1.0)) {
    throw ConfigError("label smoothing must be in [0, 1), got " + std::to_string(eps));
  }
  const int k = check_scores("softmax cross-entropy", logits, labels, true);
  // The smoothed target: q_j = off for j != y, on for j == y (on = 1, off = 0 without smoothing).
  const double off = eps / k;
  const double on = 1.0 - eps + off;
  const int n = logits.shape().n;
  if (dlogits) dlogits->resize(logits.shape());
  const double inv_n = 1.0 / (divisor > 0 ? divisor : n);
  if (sample_losses) sample_losses->resize(static_cast<std::size_t>(n));
  LossResult result;
  double total = 0.0;
  for (int i = 0; i < n; ++i) {
    const float* z = logits.sample(i);
    const int y = labels[i];
    const double m = row_max(z, k);
    double sum = 0.0;
    for (int j = 0; j < k; ++j) sum += std::exp(static_cast<double>(z[j]) - m);
    const double log_sum = std::log(sum);
    const double nll_y = log_sum - (static_cast<double>(z[y]) - m);
    if (eps > 0.0) {
      // −Σ_j q_j log p_j = (1 − eps)(−log p_y) + (eps/K) Σ_j (−log p_j)
      double nll_sum = 0.0;
      for (int j = 0; j < k; ++j) nll_sum += log_sum - (static_cast<double>(z[j]) - m);
      const double term = (1.0 - eps) * nll_y + off * nll_sum;
      total += term;
      if (sample_losses) (*sample_losses)[i] = term;
    } else {
      total += nll_y;
      if (sample_losses) (*sample_losses)[i] = nll_y;
    }
    if (argmax(z, k) == y) ++result.correct;
    if (dlogits) {
      float* d = dlogits->sample(i);
      for (int j = 0; j < k; ++j) {
        const double p = std::exp(static_cast<double>(z[j]) - m - log_sum);
        d[j] = static_cast<float>(((j == y ? p - on : p - off)) * inv_n);
      }
    }
  }
  result.loss = total * inv_n;
  return result;
}

}  // namespace

int top1(const float* row, int classes) { return argmax(row, classes); }

LossResult softmax_cross_entropy(const Tensor& logits, std::span<const int> labels,
                                 Tensor& dlogits, double label_smoothing) {
  return cross_entropy(logits, labels, &dlogits, label_smoothing);
}

LossResult softmax_cross_entropy(const Tensor& logits, std::span<const int> labels, Tensor& dlogits,
                                 double label_smoothing, int batch_samples, std::vector<double>& sample_losses) {
  if (batch_samples < logits.shape().n)
    throw ShapeError("softmax cross-entropy: the batch has " + std::to_string(batch_samples) +
                     " samples, fewer than the " + std::to_string(logits.shape().n) + " rows of the logits");
  return cross_entropy(logits, labels, &dlogits, label_smoothing, batch_samples, &sample_losses);
}

LossResult softmax_cross_entropy(const Tensor& logits, std::span<const int> labels) {
  return cross_entropy(logits, labels, nullptr, 0.0);
}

void softmax(const Tensor& logits, Tensor& probs) {
  const Shape& s = logits.shape();
  if (s.c < 1 || s.h != 1 || s.w != 1 || s.n < 0) {
    throw ShapeError("softmax: expected N x K x 1 x 1 logits, got " + shape_text(s));
  }
  probs.resize(s);
  const int k = s.c;
  for (int i = 0; i < s.n; ++i) {
    const float* z = logits.sample(i);
    float* p = probs.sample(i);
    const double m = row_max(z, k);
    double sum = 0.0;
    for (int j = 0; j < k; ++j) sum += std::exp(static_cast<double>(z[j]) - m);
    const double inv = 1.0 / sum;
    for (int j = 0; j < k; ++j) {
      p[j] = static_cast<float>(std::exp(static_cast<double>(z[j]) - m) * inv);
    }
  }
}

LossResult nll_of_probabilities(const Tensor& probs, std::span<const int> labels) {
  const int k = check_scores("negative log-likelihood", probs, labels, true);
  const int n = probs.shape().n;
  LossResult result;
  double total = 0.0;
  for (int i = 0; i < n; ++i) {
    const float* p = probs.sample(i);
    total -= std::log(static_cast<double>(p[labels[i]]));
    if (argmax(p, k) == labels[i]) ++result.correct;
  }
  result.loss = total / n;
  return result;
}

int count_top_k(const Tensor& scores, std::span<const int> labels, int k) {
  if (k < 1) throw ConfigError("top-k accuracy: k must be at least 1, got " + std::to_string(k));
  const int classes = check_scores("top-k accuracy", scores, labels, false);
  int correct = 0;
  for (int i = 0; i < scores.shape().n; ++i) {
    const float* s = scores.sample(i);
    const int y = labels[i];
    int rank = 0;
    for (int j = 0; j < classes; ++j) {
      if (s[j] > s[y] || (s[j] == s[y] && j < y)) ++rank;
    }
    if (rank < k) ++correct;
  }
  return correct;
}

}  // namespace augflow::model
