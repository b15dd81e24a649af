// Test-time scoring: members, their views, lock-step loaders (see predictor.hpp).
#include "pipeline/predictor.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <system_error>

#include "augment/registry.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "model/net.hpp"
#include "pipeline/image_files.hpp"
#include "pipeline/loader.hpp"
#include "pipeline/model_io.hpp"

namespace augflow::pipeline {
namespace {

namespace fs = std::filesystem;

std::string join_ints(const std::vector<int>& values) {
  std::string text;
  for (int v : values) text += (text.empty() ? "" : ",") + std::to_string(v);
  return text;
}

std::string join(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& n : names) text += (text.empty() ? "" : ", ") + n;
  return text;
}

/// The training crop's view geometry: the resize and padding the rule in evaluator.hpp gives.
struct TrainedCrop {
  int resize = 0;  ///< 0: none found (resize to the crop)
  int pad = 0;
};

TrainedCrop trained_crop(const augment::Pipeline& train) {
  for (const auto& t : train.transforms()) {
    const auto& a = t->args();
    if (t->name() == "scale_crop") return {a.integer("min"), 0};
    if (t->name() == "resized_crop") return {(a.integer("size") * 8 + 6) / 7, 0};
    if (t->name() == "center_crop") return {a.integer("resize"), 0};
    if (t->name() == "pad_crop") return {a.integer("size") + 2 * a.integer("pad"), a.integer("pad")};
  }
  return {};
}

bool has_step(const augment::Pipeline& train, const std::string& name) {
  return std::any_of(train.transforms().begin(), train.transforms().end(),
                     [&](const auto& t) { return t->name() == name; });
}

}  // namespace

std::string auto_views(const augment::Pipeline& train, int crop) {
  // Ten crops pay when training saw objects at many scales and positions of a large image;
  // elsewhere their corner crops show the model what it never saw (measured: on 32x32 images
  // trained with pad_crop, ten-crop and multi-scale lose to the centre).
  if (crop >= 224 && (has_step(train, "scale_crop") || has_step(train, "resized_crop"))) return "tencrop";
  if (has_step(train, "hflip")) return "flip";
  return "center";
}

namespace {

/// In-place softmax of one row.
void softmax(float* row, int classes) {
  float most = row[0];
  for (int k = 1; k < classes; ++k) most = std::max(most, row[k]);
  double sum = 0;
  for (int k = 0; k < classes; ++k) sum += row[k] = std::exp(row[k] - most);
  for (int k = 0; k < classes; ++k) row[k] = static_cast<float>(row[k] / sum);
}

/// A checkpoint's class names, or "0".."K-1" when it recorded none.
std::vector<std::string> names_of(const model::Checkpoint& ck) {
  if (!ck.class_names.empty()) return ck.class_names;
  std::vector<std::string> names;
  for (int k = 0; k < ck.classes; ++k) names.push_back(std::to_string(k));
  return names;
}

}  // namespace

MemberViews member_views(const model::Checkpoint& ckpt, const TestTimeOptions& c) {
  const augment::Pipeline train = augment::parse_pipeline_any(ckpt.augmentation.empty() ? "normalize(none)"
                                                                                        : ckpt.augmentation);
  const std::string normalize = augment::print_step(train.normalize().args());
  const int input = ckpt.input.h;
  if (ckpt.input.h != ckpt.input.w)
    throw ShapeError("the model takes " + std::to_string(ckpt.input.w) + "x" + std::to_string(ckpt.input.h) +
                     " inputs; test-time views are square crops");
  const TrainedCrop trained = trained_crop(train);
  const int crop = c.crop > 0 ? c.crop : input;
  if (crop != input)
    throw ShapeError("--crop " + std::to_string(crop) + ": the model takes " + std::to_string(input) + "x" +
                     std::to_string(input) + " inputs and cannot be given another size; use --resize to change " +
                     "the scale the crops are taken at");
  const int resize = c.resize > 0 ? c.resize : (trained.resize > 0 ? trained.resize : crop);
  const int pad = c.resize > 0 ? 0 : trained.pad;  // an explicit --resize means "resize, do not pad"
  if (resize < crop)
    throw ConfigError("--resize " + std::to_string(resize) + " is smaller than the crop (" + std::to_string(crop) +
                      "): the shorter side must be at least the crop");
  MemberViews out;
  out.pad = pad;
  const std::string geometry = std::to_string(resize) + "," + std::to_string(crop);
  const std::string mode = c.views == kAutoViews ? auto_views(train, crop) : c.views;
  if (mode == "center") {
    out.spec = "center(" + geometry + ") | " + normalize;
  } else if (mode == "flip") {
    out.spec = "flip(" + geometry + ") | " + normalize;
  } else if (mode == "tencrop") {
    out.spec = "tencrop(" + geometry + ") | " + normalize;
  } else if (mode == "multiscale") {
    std::vector<int> scales = c.scales;
    if (scales.empty())
      scales = crop >= 224 ? std::vector<int>{224, 256, 384, 480, 640}
                           : std::vector<int>{resize, resize + resize / 8, resize + resize / 4};
    for (int s : scales)
      if (s < crop)
        throw ConfigError("--scales: " + std::to_string(s) + " is smaller than the crop (" + std::to_string(crop) +
                          "); every scale must be at least the crop");
    out.spec = "multiscale([" + join_ints(scales) + "]," + std::to_string(crop) + ") | " + normalize;
  } else {
    // A view spec given in full; it keeps the training normalization unless it names its own.
    out.spec = c.views.find("normalize") == std::string::npos ? c.views + " | " + normalize : c.views;
    out.pad = 0;
  }
  const augment::ViewPipeline parsed = augment::parse_views(out.spec);
  if (parsed.views.crop_size() != input)
    throw ShapeError("the views '" + parsed.print() + "' crop " + std::to_string(parsed.views.crop_size()) +
                     " pixels but the model takes " + std::to_string(input) + "x" + std::to_string(input) + " inputs");
  out.spec = parsed.print();
  return out;
}

void average_views(const model::Tensor& logits, int images, int views, int classes, bool average_logits,
                   std::vector<float>& probs) {
  probs.assign(static_cast<std::size_t>(images) * classes, 0.0f);
  std::vector<float> row(classes);
  for (int i = 0; i < images; ++i) {
    float* out = probs.data() + static_cast<std::size_t>(i) * classes;
    for (int v = 0; v < views; ++v) {
      const float* z = logits.data() + (static_cast<std::size_t>(i) * views + v) * classes;
      std::copy(z, z + classes, row.begin());
      if (!average_logits) softmax(row.data(), classes);
      for (int k = 0; k < classes; ++k) out[k] += row[k] / views;
    }
    if (average_logits) softmax(out, classes);
  }
}

std::vector<int> top_classes(std::span<const float> probs, int k) {
  std::vector<int> order(probs.size());
  std::iota(order.begin(), order.end(), 0);
  const auto keep = static_cast<std::size_t>(std::clamp(k, 0, static_cast<int>(order.size())));
  // stable: equal probabilities keep the lower class id first, so the output is reproducible.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
  order.resize(keep);
  return order;
}

// ---------------------------------------------------------------------------------------------
// Predictor

Predictor::Predictor(const TestTimeOptions& c) : options_(c) {
  if (c.members.empty()) throw ConfigError("--model: give at least one model file (.ckpt or .onnx)");
  if (c.batch < 1 || c.batch > 8192) throw ConfigError("--batch must be in [1, 8192] views, got " + std::to_string(c.batch));
  if (c.average != "probs" && c.average != "logits")
    throw ConfigError("--average must be probs or logits, got '" + c.average + "'");
  for (const auto& path : c.members) {
    Member m;
    m.path = path;
    m.checkpoint = load_model(path);
    const auto& ck = m.checkpoint;
    const std::vector<std::string> names = names_of(ck);
    if (members_.empty()) {
      class_names_ = names;
    } else if (names != class_names_) {
      const Member& first = members_.front();
      throw DataError(path, "its " + std::to_string(names.size()) + " classes (" + join(names) +
                                ") differ from the " + std::to_string(class_names_.size()) + " of " + first.path +
                                " (" + join(class_names_) + "); the members of an ensemble must be trained on the "
                                "same classes");
    }
    m.views = member_views(ck, c);
    auto same = std::find_if(groups_.begin(), groups_.end(), [&](const MemberViews& g) {
      return g.spec == m.views.spec && g.pad == m.views.pad;
    });
    m.group = static_cast<std::size_t>(same - groups_.begin());
    if (same == groups_.end()) groups_.push_back(m.views);
    m.net = std::make_unique<model::Net>(model::parse_model_spec(ck.model_spec, ck.classes),
                                         model::Shape{0, ck.input.c, ck.input.h, ck.input.w}, ck.classes);
    model::restore_net(*m.net, ck);
    members_.push_back(std::move(m));
  }
  for (const auto& g : groups_) most_views_ = std::max(most_views_, augment::parse_views(g.spec).views.count());
}

Predictor::~Predictor() = default;

void Predictor::open(Dataset data, const WarningSink& log) {
  for (const auto& m : members_)
    if (m.checkpoint.input.c != data.channels)
      throw ShapeError(m.path + ": the model takes " + std::to_string(m.checkpoint.input.c) +
                       "-channel inputs but " + data.name + " decodes to " + std::to_string(data.channels) +
                       " channel(s)");
  // The model sees --batch views at a time: batches of images hold --batch / views of them.
  LoaderOptions options;
  options.batch_size = std::max(1, options_.batch / most_views_);
  options.threads = options_.threads;
  options.shuffle = false;
  options.prefetch_batches = 2;
  options.prefetch_next_epoch = false;
  auto decode_only = std::make_shared<const augment::Pipeline>(augment::parse_pipeline("normalize(none)"));
  loaders_.clear();
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    LoaderOptions o = options;
    o.views = std::make_shared<const augment::ViewPipeline>(augment::parse_views(groups_[g].spec));
    o.view_pad = groups_[g].pad;
    // Each loader finds the same bad files; only the first one's warnings are shown.
    loaders_.push_back(std::make_unique<Loader>(g == 0 ? data : Dataset(data), decode_only, o,
                                                g == 0 ? log : WarningSink{}));
  }
}

const BadFiles& Predictor::bad_files() const {
  if (loaders_.empty()) throw Error("Predictor::bad_files() before open() (internal error)");
  return loaders_.front()->bad_files();
}

const Dataset& Predictor::dataset() const {
  if (loaders_.empty()) throw Error("Predictor::dataset() before open() (internal error)");
  return loaders_.front()->dataset();
}

void Predictor::score(std::uint64_t pass, const std::function<void(const ImageScores&)>& sink) {
  if (loaders_.empty()) throw Error("Predictor::score() before open() (internal error)");
  const bool average_logits = options_.average == "logits";
  const int classes = this->classes();
  const Dataset& data = dataset();
  // The loader drops unusable samples from their batches: the gaps between the sample ids it
  // delivers (and after the last one) are exactly those, and it records them before the
  // sequencer lets a later sample through, so their reasons are known when the gap shows.
  std::size_t next_index = 0;
  const auto skipped_until = [&](std::size_t end) {
    for (; next_index < end; ++next_index) {
      ImageScores s;
      s.index = next_index;
      s.label = data.labels[next_index];
      const auto entry = loaders_.front()->bad_files().find(next_index);
      s.error = entry ? *entry : std::string("skipped by the loader (no reason recorded)");
      sink(s);
    }
  };

  for (auto& loader : loaders_) loader->start_epoch(pass);
  model::Tensor x;
  std::vector<std::vector<float>> member_probs(members_.size());
  std::vector<float> ensemble;
  std::vector<std::span<const float>> member_rows(members_.size());
  for (;;) {
    std::vector<std::optional<Batch>> batches;
    for (auto& loader : loaders_) batches.push_back(loader->next());
    if (!batches.front()) break;
    const Batch& first = *batches.front();
    for (const auto& b : batches)
      if (!b || !std::equal(b->sample_ids().begin(), b->sample_ids().end(), first.sample_ids().begin(),
                            first.sample_ids().end()))
        throw Error("test-time scoring: the loaders of the members' view sets fell out of step (internal error)");
    const int images = first.size();
    ensemble.assign(static_cast<std::size_t>(images) * classes, 0.0f);
    for (std::size_t mi = 0; mi < members_.size(); ++mi) {
      Member& m = members_[mi];
      const Batch& b = *batches[m.group];
      const auto& s = b.shape();
      x.resize({images * b.views(), s.channels, s.height, s.width});
      std::copy(b.data(), b.data() + x.size(), x.data());
      const model::ForwardContext ctx{model::Mode::test, m.checkpoint.seed, 0, 0, nullptr};
      const model::Tensor& logits = m.net->forward(x, ctx);
      average_views(logits, images, b.views(), classes, average_logits, member_probs[mi]);
      for (std::size_t k = 0; k < ensemble.size(); ++k) ensemble[k] += member_probs[mi][k] / members_.size();
    }
    for (int i = 0; i < images; ++i) {
      const auto id = static_cast<std::size_t>(first.sample_ids()[i]);
      skipped_until(id);
      const auto row = static_cast<std::size_t>(i) * classes;
      for (std::size_t mi = 0; mi < members_.size(); ++mi)
        member_rows[mi] = std::span<const float>(member_probs[mi]).subspan(row, classes);
      ImageScores s;
      s.index = id;
      s.label = first.labels()[i];
      s.probs = std::span<const float>(ensemble).subspan(row, classes);
      s.member_probs = member_rows;
      sink(s);
      next_index = id + 1;
    }
  }
  skipped_until(data.size());
}

// ---------------------------------------------------------------------------------------------
// Unlabelled inputs

Dataset open_unlabelled(const std::vector<std::string>& inputs, const WarningSink& warn) {
  if (inputs.empty()) throw ConfigError("no images given: name image files, folders or list files");
  Dataset data;
  data.name = inputs.size() == 1 ? inputs.front() : "the " + std::to_string(inputs.size()) + " inputs";
  data.channels = 3;
  for (const auto& input : inputs) {
    const fs::path path(input);
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (!fs::exists(status))
      throw ConfigError(input + ": no such file or folder; check the path (images named inside a list file "
                                "that are missing are reported per image instead)");
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (fs::is_directory(status)) {
      const auto files = list_image_files(path, warn);
      if (files.empty() && warn)
        warn("no images in folder '" + input + "' (extensions jpg jpeg png bmp webp tif tiff gif ppm pgm pbm)");
      data.paths.insert(data.paths.end(), files.begin(), files.end());
    } else if (ext == ".csv" || ext == ".txt" || ext == ".lst") {
      for (auto& line : read_list_lines(path, false)) data.paths.push_back(std::move(line.path));
    } else {
      data.paths.push_back(path);
    }
  }
  if (data.paths.empty()) throw DataError(data.name, "no images to label: the folders given hold no image files");
  data.labels.assign(data.paths.size(), 0);
  data.class_names = {"unlabelled"};
  return data;
}

}  // namespace augflow::pipeline
