// Test-time scoring, shared by augflow eval and augflow predict: load the models of an
// ensemble, choose each member's deterministic views, stream images through the loader, and
// hand back each image's class probabilities in sample order.
//
// Contract:
// - Models are loaded with load_model (model_io.hpp), so .ckpt and .onnx files are alike. The
//   members of an ensemble must agree on their classes (count and names); their layers run in
//   Mode::test (dropout off, batch-norm running statistics).
// - Each member gets its views from member_views (the rule in evaluator.hpp and the README).
//   Members whose views are the same share one loader; loaders of different view sets run in
//   lockstep over the same images, so memory stays bounded by --batch and the loaders' few
//   batches in flight, whatever the number of images.
// - A member's probabilities are the average over its views (average_views); the ensemble's
//   are the mean of its members'.
// - score() calls its sink once per image of the data set, in sample order, including the
//   images the loader could not use (undecodable, truncated, missing, too large): those come
//   with the loader's reason and no probabilities, at their place in the order.
//
// API: public, part of augflow::pipeline; installed as <augflow/pipeline/predictor.hpp>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "augflow/model/checkpoint.hpp"
#include "augflow/model/tensor.hpp"
#include "augflow/pipeline/dataset.hpp"
#include "augflow/pipeline/report.hpp"

namespace augflow::model {
class Net;
}
namespace augflow::augment {
class Pipeline;
}

namespace augflow::pipeline {

class Loader;

/// The --views value that picks each member's views from its training spec (auto_views).
inline constexpr const char* kAutoViews = "auto";

/// What eval and predict share: the models and how they see each image.
struct TestTimeOptions {
  std::vector<std::string> members;  ///< model files (.ckpt, .onnx); several = an ensemble
  std::string views = kAutoViews;    ///< auto | center | flip | tencrop | multiscale | a view spec
  std::vector<int> scales;           ///< multiscale short sides; empty: the default rule
  int resize = 0;                    ///< shorter side before cropping; 0: from the training spec
  int crop = 0;                      ///< crop side; 0: the model's input size
  std::string average = "probs";     ///< what is averaged over views: probs | logits
  int batch = 64;                    ///< views per forward pass of the model
  int threads = 2;                   ///< decode and crop threads of each loader
};

/// The views the training spec makes useful (what --views auto picks): tencrop after scale
/// augmentation (scale_crop, resized_crop) at crops of 224 and more, the lecture's setting;
/// flip (the centre and its mirror) when training flipped; center otherwise.
std::string auto_views(const augment::Pipeline& train, int crop);

/// The view spec (text) a model gets under `options` (the rule in evaluator.hpp), and the
/// padding applied before the views. Throws ConfigError/ShapeError for a crop that does not fit
/// the model's input.
struct MemberViews {
  std::string spec;  ///< e.g. "tencrop(resize=256,size=224) | normalize(preset=imagenet)"
  int pad = 0;
};
MemberViews member_views(const model::Checkpoint& checkpoint, const TestTimeOptions& options);

/// Averages each image's `views` consecutive rows of `logits` (images*views x classes) into one
/// probability row of `probs` (images x classes): the mean of the views' softmax outputs, or
/// with `average_logits` the softmax of the mean logits.
void average_views(const model::Tensor& logits, int images, int views, int classes, bool average_logits,
                   std::vector<float>& probs);

/// One image's result, as score() hands it over. The spans are valid during the call only.
struct ImageScores {
  std::size_t index = 0;  ///< sample index in the data set (the input order)
  int label = 0;          ///< the data set's label (meaningless for unlabelled inputs)
  std::span<const float> probs;  ///< the ensemble's probabilities, one per class; empty when skipped
  std::span<const std::span<const float>> member_probs;  ///< each member's own; empty when skipped
  std::string error;      ///< why the image could not be used; empty when scored
  bool ok() const { return error.empty(); }
};

/// The classes of `probs` from most to least probable (ties: lower class id first), at most `k`.
std::vector<int> top_classes(std::span<const float> probs, int k);

/// An ensemble of one or more models and the loaders that feed it.
class Predictor {
 public:
  /// Loads every member and chooses its views. Throws ConfigError for bad settings (batch,
  /// average, views), IoError/DataError for a model file that cannot be read, and DataError
  /// naming both files when two members were trained on different classes.
  explicit Predictor(const TestTimeOptions& options);
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  struct Member {
    std::string path;
    model::Checkpoint checkpoint;
    std::unique_ptr<model::Net> net;
    MemberViews views;
    std::size_t group = 0;  ///< the loader (view set) it reads from
  };
  const std::vector<Member>& members() const { return members_; }
  /// The members' classes: the names they recorded, or "0".."K-1" when they recorded none.
  const std::vector<std::string>& class_names() const { return class_names_; }
  int classes() const { return static_cast<int>(class_names_.size()); }
  /// The first member's view spec, and the most views any member takes of an image.
  const std::string& views() const { return members_.front().views.spec; }
  int views_per_image() const { return most_views_; }

  /// Prepares to stream `data` (one loader per view set; `log` gets the loader's warnings and
  /// its bad files as they are found). Throws ShapeError when a member takes another number of
  /// channels than the data decodes to.
  void open(Dataset data, const WarningSink& log);
  /// One pass over the opened data: `sink` gets every image in sample order (see the contract
  /// above). `pass` numbers the passes (each is a loader epoch; results do not depend on it).
  void score(std::uint64_t pass, const std::function<void(const ImageScores&)>& sink);
  /// The images found unusable so far, with their reasons.
  const BadFiles& bad_files() const;
  /// The opened data set (paths for messages and output rows).
  const Dataset& dataset() const;

 private:
  TestTimeOptions options_;
  std::vector<Member> members_;
  std::vector<std::string> class_names_;
  std::vector<MemberViews> groups_;  ///< the distinct view sets, in order of first use
  int most_views_ = 1;
  std::vector<std::unique_ptr<Loader>> loaders_;
};

/// The images to label (augflow predict) as one data set, in the order given: each input is an
/// image file (taken whatever its extension; the decoder judges it), a folder (every image below
/// it, recursively, sorted by path, with the walker of image folders: same extensions, hidden
/// entries skipped, symbolic-link loops skipped with a warning; no class sub-folders), or a
/// list file (.csv, .txt, .lst: one path per line, relative to the list's folder; a `,label`
/// after the path is ignored). Paths inside list files that do not exist stay in the data set
/// (the loader reports them, in order). Throws ConfigError naming an input that does not exist
/// (a usage error: a mistyped argument should stop the run before any work), IoError/DataError
/// for an unreadable or malformed list file, and DataError when the inputs hold no image at all. Labels are all 0; channels 3.
Dataset open_unlabelled(const std::vector<std::string>& inputs, const WarningSink& warn = {});

}  // namespace augflow::pipeline
