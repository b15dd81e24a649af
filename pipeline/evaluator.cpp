#include "pipeline/evaluator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "augment/registry.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "model/net.hpp"
#include "pipeline/loader.hpp"
#include "pipeline/plot.hpp"

namespace augflow::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string join_ints(const std::vector<int>& values) {
  std::string text;
  for (int v : values) text += (text.empty() ? "" : ",") + std::to_string(v);
  return text;
}

/// The training crop's view geometry: the resize and padding the rule in the header gives.
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

/// One member: its checkpoint, network and view set.
struct Member {
  std::string path;
  model::Checkpoint checkpoint;
  std::unique_ptr<model::Net> net;
  MemberViews views;
  std::size_t group = 0;  ///< index of the loader it reads from
  // Per-member running sums.
  std::size_t top1 = 0, top5 = 0;
  double nll = 0;
};

/// Probability-space accumulation of one image's class scores into the metrics.
struct Tally {
  std::size_t images = 0, top1 = 0, top5 = 0;
  double nll = 0;
  void add(const float* probs, int classes, int label) {
    ++images;
    const float p = probs[label];
    int above = 0;  // classes strictly more probable than the true one (ties count for it)
    for (int k = 0; k < classes; ++k) above += probs[k] > p;
    top1 += above == 0;
    top5 += above < std::min(5, classes);
    nll -= std::log(std::max(static_cast<double>(p), 1e-12));
  }
  EvalMetrics metrics() const {
    if (images == 0) return {};
    return {static_cast<double>(top1) / images, static_cast<double>(top5) / images, nll / images};
  }
};

/// In-place softmax of one row.
void softmax(float* row, int classes) {
  float most = row[0];
  for (int k = 1; k < classes; ++k) most = std::max(most, row[k]);
  double sum = 0;
  for (int k = 0; k < classes; ++k) sum += row[k] = std::exp(row[k] - most);
  for (int k = 0; k < classes; ++k) row[k] = static_cast<float>(row[k] / sum);
}

}  // namespace

MemberViews member_views(const model::Checkpoint& ckpt, const EvalConfig& c) {
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
  if (c.views == "center") {
    out.spec = "center(" + geometry + ") | " + normalize;
  } else if (c.views == "tencrop") {
    out.spec = "tencrop(" + geometry + ") | " + normalize;
  } else if (c.views == "multiscale") {
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

EvalResult evaluate(const EvalConfig& c, const std::function<void(const std::string&)>& log) {
  if (c.members.empty()) throw ConfigError("--model: give at least one checkpoint");
  if (c.batch < 1 || c.batch > 8192) throw ConfigError("--batch must be in [1, 8192] views, got " + std::to_string(c.batch));
  if (c.repeats < 1) throw ConfigError("--repeats must be at least 1");
  if (c.average != "probs" && c.average != "logits")
    throw ConfigError("--average must be probs or logits, got '" + c.average + "'");
  const bool average_logits = c.average == "logits";

  Dataset data = open_dataset(c.data, log);
  const int classes = static_cast<int>(data.class_names.size());

  // Members, grouped by view set (one loader per group).
  std::vector<Member> members;
  std::vector<MemberViews> groups;
  for (const auto& path : c.members) {
    Member m;
    m.path = path;
    m.checkpoint = model::load_checkpoint(path);
    const auto& ck = m.checkpoint;
    if (ck.classes != classes || (!ck.class_names.empty() && ck.class_names != data.class_names)) {
      std::string theirs, ours;
      for (const auto& n : ck.class_names) theirs += (theirs.empty() ? "" : ", ") + n;
      for (const auto& n : data.class_names) ours += (ours.empty() ? "" : ", ") + n;
      throw DataError(c.data, "its " + std::to_string(classes) + " classes (" + ours + ") differ from the " +
                                  std::to_string(ck.classes) + " the model " + path + " was trained on (" + theirs +
                                  "); evaluate on data with the same class folders");
    }
    if (ck.input.c != data.channels)
      throw ShapeError(path + ": the model takes " + std::to_string(ck.input.c) + "-channel inputs but " + c.data +
                       " decodes to " + std::to_string(data.channels) + " channel(s)");
    m.views = member_views(ck, c);
    auto same = std::find_if(groups.begin(), groups.end(), [&](const MemberViews& g) {
      return g.spec == m.views.spec && g.pad == m.views.pad;
    });
    m.group = static_cast<std::size_t>(same - groups.begin());
    if (same == groups.end()) groups.push_back(m.views);
    m.net = std::make_unique<model::Net>(model::parse_model_spec(ck.model_spec, ck.classes),
                                         model::Shape{0, ck.input.c, ck.input.h, ck.input.w}, ck.classes);
    model::restore_net(*m.net, ck);
    members.push_back(std::move(m));
  }

  std::vector<std::shared_ptr<const augment::ViewPipeline>> view_sets;
  int most_views = 1;
  for (const auto& g : groups) {
    view_sets.push_back(std::make_shared<const augment::ViewPipeline>(augment::parse_views(g.spec)));
    most_views = std::max(most_views, view_sets.back()->views.count());
  }
  // The model sees --batch views at a time: batches of images hold --batch / views of them.
  LoaderOptions options;
  options.batch_size = std::max(1, c.batch / most_views);
  options.threads = c.threads;
  options.shuffle = false;
  options.prefetch_batches = 2;
  options.prefetch_next_epoch = false;
  auto decode_only = std::make_shared<const augment::Pipeline>(augment::parse_pipeline("normalize(none)"));
  std::vector<std::unique_ptr<Loader>> loaders;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    LoaderOptions o = options;
    o.views = view_sets[g];
    o.view_pad = groups[g].pad;
    // Each loader reports the same bad files; only the first one's warnings are shown.
    loaders.push_back(std::make_unique<Loader>(g == 0 ? data : Dataset(data), decode_only, o,
                                               g == 0 ? log : std::function<void(const std::string&)>{}));
  }

  EvalResult result;
  result.class_names = data.class_names;
  result.views = groups.front().spec;
  result.views_per_image = most_views;
  std::vector<double> rates;
  model::Tensor x;
  std::vector<float> member_probs, ensemble;
  for (int pass = 0; pass < c.repeats; ++pass) {
    Tally total;
    for (auto& m : members) m.top1 = m.top5 = 0, m.nll = 0;
    std::vector<Tally> member_tally(members.size());
    result.confusion.assign(classes, std::vector<std::size_t>(classes, 0));
    const auto start = Clock::now();
    for (auto& loader : loaders) loader->start_epoch(static_cast<std::uint64_t>(pass));
    for (;;) {
      std::vector<std::optional<Batch>> batches;
      for (auto& loader : loaders) batches.push_back(loader->next());
      if (!batches.front()) break;
      const Batch& first = *batches.front();
      for (const auto& b : batches)
        if (!b || !std::equal(b->sample_ids().begin(), b->sample_ids().end(), first.sample_ids().begin(),
                              first.sample_ids().end()))
          throw Error("evaluation: the loaders of the members' view sets fell out of step (internal error)");
      const int images = first.size();
      ensemble.assign(static_cast<std::size_t>(images) * classes, 0.0f);
      for (std::size_t mi = 0; mi < members.size(); ++mi) {
        Member& m = members[mi];
        const Batch& b = *batches[m.group];
        const auto& s = b.shape();
        x.resize({images * b.views(), s.channels, s.height, s.width});
        std::copy(b.data(), b.data() + x.size(), x.data());
        const model::ForwardContext ctx{model::Mode::test, m.checkpoint.seed, 0, 0, nullptr};
        const model::Tensor& logits = m.net->forward(x, ctx);
        average_views(logits, images, b.views(), classes, average_logits, member_probs);
        for (int i = 0; i < images; ++i)
          member_tally[mi].add(member_probs.data() + static_cast<std::size_t>(i) * classes, classes, first.labels()[i]);
        for (std::size_t k = 0; k < ensemble.size(); ++k) ensemble[k] += member_probs[k] / members.size();
      }
      for (int i = 0; i < images; ++i) {
        const float* p = ensemble.data() + static_cast<std::size_t>(i) * classes;
        total.add(p, classes, first.labels()[i]);
        const int predicted = static_cast<int>(std::max_element(p, p + classes) - p);
        ++result.confusion[first.labels()[i]][predicted];
      }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(seconds > 0 ? total.images / seconds : 0);
    result.images = total.images;
    result.metrics = total.metrics();
    result.members.clear();
    for (std::size_t mi = 0; mi < members.size(); ++mi)
      result.members.push_back({members[mi].path, members[mi].views.spec, member_tally[mi].metrics()});
  }
  std::sort(rates.begin(), rates.end());
  result.images_per_second = rates[rates.size() / 2];
  result.skipped_files = loaders.front()->bad_files().count();
  if (result.skipped_files) log(loaders.front()->bad_files().summary());
  result.per_class_accuracy.assign(classes, 0.0);
  for (int k = 0; k < classes; ++k) {
    std::size_t row = 0;
    for (std::size_t n : result.confusion[k]) row += n;
    result.per_class_accuracy[k] = row ? static_cast<double>(result.confusion[k][k]) / row : 0.0;
  }
  if (!c.out.empty()) write_confusion(c.out, result);
  return result;
}

void write_confusion(const std::string& folder, const EvalResult& r) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw IoError(folder + ": cannot create the folder: " + ec.message());
  auto open = [](const fs::path& path) {
    std::ofstream out(path);
    if (!out) throw IoError(path.string() + ": cannot write");
    return out;
  };
  auto quoted = [](const std::string& s) {
    std::string q = "\"";
    for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return q + "\"";
  };
  {
    auto out = open(fs::path(folder) / "confusion.csv");
    out << "true\\predicted";
    for (const auto& n : r.class_names) out << "," << quoted(n);
    out << "\n";
    for (std::size_t t = 0; t < r.confusion.size(); ++t) {
      out << quoted(r.class_names[t]);
      for (std::size_t n : r.confusion[t]) out << "," << n;
      out << "\n";
    }
  }
  {
    auto out = open(fs::path(folder) / "per_class.csv");
    out << "class,images,accuracy\n";
    for (std::size_t t = 0; t < r.confusion.size(); ++t) {
      std::size_t row = 0;
      for (std::size_t n : r.confusion[t]) row += n;
      out << quoted(r.class_names[t]) << "," << row << "," << r.per_class_accuracy[t] << "\n";
    }
  }
  write_confusion_png((fs::path(folder) / "confusion.png").string(), r.confusion, r.class_names);
}

}  // namespace augflow::pipeline
