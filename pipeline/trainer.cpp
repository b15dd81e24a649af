#include "pipeline/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "augment/registry.hpp"
#include "augment/spec.hpp"
#include "common/communicator.hpp"
#include "common/error.hpp"
#include "common/format.hpp"
#include "model/checkpoint.hpp"
#include "model/loss.hpp"
#include "model/net.hpp"
#include "model/optim.hpp"
#include "model/parallel.hpp"
#include "model/regularizer.hpp"
#include "pipeline/data_parallel.hpp"
#include "pipeline/defaults.hpp"
#include "pipeline/loader.hpp"
#include "pipeline/model_io.hpp"
#include "pipeline/plot.hpp"

namespace augflow::pipeline {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

/// Validation sees no randomness: the training spec's crop becomes its deterministic
/// counterpart (scale_crop(min,max,size) -> center_crop(min,size), resized_crop(size) ->
/// center_crop(size*8/7,size), the ImageNet 256/224 ratio; pad_crop(pad,size) -> center_crop(
/// size,size)), followed by the same normalize. Without a crop: normalize only.
std::string validation_spec(const augment::Pipeline& train) {
  std::string crop;
  for (const auto& t : train.transforms()) {
    const auto& a = t->args();
    if (t->name() == "scale_crop") {
      crop = "center_crop(" + std::to_string(a.integer("min")) + "," + std::to_string(a.integer("size")) + ")";
    } else if (t->name() == "resized_crop") {
      const int size = a.integer("size");
      crop = "center_crop(" + std::to_string((size * 8 + 6) / 7) + "," + std::to_string(size) + ")";
    } else if (t->name() == "pad_crop" || t->name() == "center_crop") {
      crop = "center_crop(" + std::to_string(a.integer("size")) + "," + std::to_string(a.integer("size")) + ")";
    }
    if (!crop.empty()) break;
  }
  const std::string normalize = augment::print_step(train.normalize().args());
  return crop.empty() ? normalize : crop + " | " + normalize;
}

struct EpochStats {
  double loss = 0;
  double accuracy = 0;
  std::size_t images = 0;
};

/// Copies a batch into the network's input tensor (the loader's batch is already NCHW float).
void to_tensor(const Batch& batch, model::Tensor& x) {
  const auto& s = batch.shape();
  x.resize({batch.size(), s.channels, s.height, s.width});
  std::memcpy(x.data(), batch.data(), x.size() * sizeof(float));
}

/// `x` (N x C x H x W) mirrored left to right, sample by sample: the flip view's second image.
void mirror_horizontally(const model::Tensor& x, model::Tensor& mirrored) {
  mirrored.resize(x.shape());
  const auto& s = x.shape();
  const std::size_t rows = static_cast<std::size_t>(s.n) * s.c * s.h;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* in = x.data() + r * s.w;
    std::reverse_copy(in, in + s.w, mirrored.data() + r * s.w);
  }
}

/// The validation views (TrainConfig::val_views, checked by train() before anything runs):
/// "auto" is flip when the training spec flips images (the mirror is an image the model was
/// trained on, and averaging it pays), else center.
bool validates_with_mirror(const std::string& val_views, const augment::Pipeline& train) {
  if (val_views != kAutoValViews) return val_views == "flip";
  return std::ranges::any_of(train.transforms(), [](const auto& t) { return t->name() == "hflip"; });
}

/// Accuracy and NLL over the validation loader in test mode. With `mirror`, the softmax
/// probabilities of each image and of its mirror are averaged (augflow eval's flip view).
/// Each process evaluates its share of every batch in the chunks training uses; the per-chunk
/// sums are added in (batch, chunk) order, so the figures do not depend on the process count.
EpochStats evaluate(model::Net& net, Loader& loader, std::uint64_t seed, bool mirror, DataParallel& parallel) {
  model::Tensor x, mirrored, probs, mirror_probs, unused_gradient;
  std::vector<double> losses;
  std::vector<DataParallel::ChunkRecord> records;
  loader.start_epoch(0);
  const std::size_t positions = loader.epoch_positions(0), batch = loader.options().batch_size;
  while (auto b = loader.next()) {
    const std::size_t batch_positions = std::min(batch, positions - b->index() * batch);
    const model::BatchPartition partition = parallel.partition(&*b, batch_positions);
    const model::PartitionScope scope(partition);
    to_tensor(*b, x);
    const model::ForwardContext ctx{model::Mode::test, seed, 0, 0, nullptr};
    const auto labels = b->labels();
    const model::Tensor* scores = nullptr;
    if (!mirror) {
      scores = &net.forward(x, ctx);
      model::softmax_cross_entropy(*scores, labels, unused_gradient, 0.0, b->size(), losses);
    } else {
      model::softmax(net.forward(x, ctx), probs);
      mirror_horizontally(x, mirrored);
      model::softmax(net.forward(mirrored, ctx), mirror_probs);
      for (std::size_t i = 0; i < probs.size(); ++i) probs[i] = 0.5f * (probs[i] + mirror_probs[i]);
      scores = &probs;
      losses.resize(labels.size());
      for (std::size_t i = 0; i < labels.size(); ++i) losses[i] = -std::log(static_cast<double>(probs.sample(i)[labels[i]]));
    }
    const int classes = scores->shape().c;
    for (int c = 0; c < partition.held(); ++c) {
      DataParallel::ChunkRecord record{b->index(), static_cast<std::uint64_t>(partition.first + c), 0.0, 0.0, 0.0};
      for (int i = partition.bounds[c]; i < partition.bounds[c + 1]; ++i) {
        record.loss += losses[i];
        record.correct += model::top1(scores->sample(i), classes) == labels[i] ? 1.0 : 0.0;
        record.samples += 1.0;
      }
      if (record.samples > 0) records.push_back(record);
    }
  }
  const auto [loss_sum, correct, images] = parallel.sum_records(records);
  EpochStats stats;
  stats.images = images;
  if (images) {
    stats.loss = loss_sum / static_cast<double>(images);
    stats.accuracy = static_cast<double>(correct) / static_cast<double>(images);
  }
  return stats;
}

/// What a training step keeps from one step to the next (no allocation per step).
struct StepBuffers {
  model::Tensor x, dlogits;
  std::vector<double> sample_losses;
  std::vector<char> sample_correct;
  std::vector<std::uint64_t> ids;
};

/// The data part of a training step (pipeline/data_parallel.hpp): this process's share of a
/// global batch of `batch_samples` usable samples (`local`; null: none of its samples arrived)
/// forward, the loss over the whole batch, backward, with the layers adding every process's
/// chunk partials in one fixed order. Returns the batch's loss sum and top-1 count.
std::pair<double, std::size_t> forward_backward(model::Net& net, DataParallel& parallel,
                                                const model::BatchPartition& partition, const Batch* local,
                                                const SampleShape& shape, int batch_samples, const TrainConfig& c,
                                                std::uint64_t step, StepBuffers& b) {
  if (local) {
    to_tensor(*local, b.x);
    b.ids.assign(local->sample_ids().begin(), local->sample_ids().end());
  } else {
    b.x.resize({0, shape.channels, shape.height, shape.width});
    b.ids.clear();
  }
  const std::span<const int> labels = local ? local->labels() : std::span<const int>();
  const model::PartitionScope scope(partition);
  const model::ForwardContext ctx{model::Mode::train, c.seed, step, 0, &b.ids};
  const auto& logits = net.forward(b.x, ctx);
  model::softmax_cross_entropy(logits, labels, b.dlogits, c.label_smoothing, batch_samples, b.sample_losses);
  b.sample_correct.assign(labels.size(), 0);
  for (std::size_t i = 0; i < labels.size(); ++i)
    b.sample_correct[i] = model::top1(logits.sample(static_cast<int>(i)), logits.shape().c) == labels[i];
  const auto sums = parallel.batch_sums(partition, b.sample_losses, b.sample_correct);
  net.backward(b.dlogits);
  return sums;
}

/// Polyak/EMA averaging after a step: ema <- d*ema + (1-d)*w for each trained parameter.
void update_ema(std::vector<model::Tensor>& ema, const std::vector<model::Param*>& trainable, double decay) {
  const float d = static_cast<float>(decay);
  for (std::size_t i = 0; i < ema.size(); ++i) {
    float* shadow = ema[i].data();
    const float* w = trainable[i]->value.data();
    for (std::size_t j = 0; j < ema[i].size(); ++j) shadow[j] = d * shadow[j] + (1.0f - d) * w[j];
  }
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream file(path);
  file << text;
  if (!file) throw IoError(path.string() + ": cannot write");
}

/// The unusable samples that epoch `epoch`'s order excludes, with their reasons: a resumed run
/// must exclude exactly these (bad files that the early start of that epoch found since are
/// rediscovered in it, as in the uninterrupted run).
nlohmann::json unusable_of(const Loader& loader, std::uint64_t epoch) {
  const auto excluded = loader.exclusions_for(epoch);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [index, entry] : loader.bad_files().entries())
    if (index < excluded.size() && excluded[index]) list.push_back({index, entry.second});
  return list;
}

void restore_unusable(Loader& loader, const nlohmann::json& list) {
  for (const auto& item : list) loader.mark_unusable(item.at(0).get<std::size_t>(), item.at(1).get<std::string>());
}

/// Babysitting a run: RUNDIR/control.json is re-read at the start of every epoch, so that a
/// person watching the curves can nudge a running model without stopping it. The file states
/// what should hold from that epoch on, so re-reading an unchanged file changes nothing:
///   {"lr": 3e-4}    sets the base learning rate (the schedule still applies on top of it)
///   {"stop": true}  ends the run before the epoch starts (summary: stopped_early)
/// Every change is logged; metrics.csv's lr column shows the rate each epoch used. A file that
/// does not parse, an unknown key or a bad value is logged and ignored: a typo must not end a
/// long run. Returns true when the run should stop.
bool apply_control(const fs::path& out, int epoch, double& base_lr, const std::function<void(const std::string&)>& log) {
  const fs::path path = out / "control.json";
  std::ifstream in(path);
  if (!in) return false;
  const std::string where = path.string() + " before epoch " + std::to_string(epoch + 1) + ": ";
  nlohmann::json control;
  try {
    control = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    log("warning: " + where + "not valid JSON, ignored (" + e.what() + ")");
    return false;
  }
  if (!control.is_object()) {
    log("warning: " + where + "expected an object such as {\"lr\": 0.0003} or {\"stop\": true}, ignored");
    return false;
  }
  for (const auto& [key, value] : control.items()) {
    if (key == "lr" && value.is_number() && value.get<double>() > 0 && std::isfinite(value.get<double>())) {
      if (value.get<double>() != base_lr) {
        log(where + "learning rate " + format_number(base_lr) + " -> " + format_number(value.get<double>()));
        base_lr = value.get<double>();
      }
    } else if (key == "stop" && value.is_boolean()) {
      if (value.get<bool>()) {
        log(where + "stop requested: the run ends after epoch " + std::to_string(epoch));
        return true;
      }
    } else {
      log("warning: " + where + "ignored \"" + key + "\": " + value.dump() +
          " (accepted: \"lr\": a positive number, \"stop\": true or false)");
    }
  }
  return false;
}

/// "frozen: layers 0-1 (conv8k3p1-bn) keep their weights and batch-norm statistics; training
/// layers 2-5 (relu-pool2-fc10)": what --freeze does to this model, said at the run's start.
std::string frozen_layers_line(model::Net& net) {
  const auto tokens = [&](std::size_t from, std::size_t to) {
    std::string text;
    for (std::size_t i = from; i < to; ++i) text += (text.empty() ? "" : "-") + net.layer(i).spec();
    return text;
  };
  const auto range = [](std::size_t from, std::size_t to) {
    return to - from == 1 ? "layer " + std::to_string(from)
                          : "layers " + std::to_string(from) + "-" + std::to_string(to - 1);
  };
  const std::size_t frozen = net.frozen(), count = net.layer_count();
  return "frozen: " + range(0, frozen) + " (" + tokens(0, frozen) +
         ") keep their weights and batch-norm statistics; training " + range(frozen, count) + " (" +
         tokens(frozen, count) + ")";
}

/// Schedules whose grammar counts epochs (step:K, exp, cyclic:..:PERIOD, restarts:T0): under a
/// time budget they need an epoch length to be laid over (--epochs).
bool counts_epochs(const model::Schedule& s) {
  return s.kind == model::ScheduleKind::step || s.kind == model::ScheduleKind::exp ||
         s.kind == model::ScheduleKind::cyclic || s.kind == model::ScheduleKind::restarts;
}

/// Where a run stands for its learning rate, and whether its budget is spent.
///
/// An epoch run asks the schedule at (epoch, batch / batches) as it always did (the warm-up
/// ramp at the point the step reaches). Budget runs lay the schedule over the budget through
/// progress p in [0, 1], taken at the point each step reaches, so that the last step runs at
/// the schedule's end value:
/// - --budget-epochs E: p = steps / round(E · batches per epoch), the step count alone, so the
///   run is bit-reproducible and resumes exactly;
/// - --budget M: p = (elapsed + one step) / (budget − reserve), from the clock, or the share of
///   the --epochs bound done when that is larger. The reserve is what the last validation and
///   checkpoint took (before the first: the validation batches at half a training step each),
///   so that the final validation fits in the budget too. p reaching 1 ends the run.
class Pace {
 public:
  Pace(const TrainConfig& c, const model::Schedule& schedule, std::size_t batches_per_epoch,
       std::size_t val_batches)
      : c_(c), schedule_(schedule), batches_(batches_per_epoch), val_batches_(val_batches) {
    if (c.budget_epochs > 0) {
      length_ = c.budget_epochs;
      total_steps_ = std::max<std::uint64_t>(
          1, static_cast<std::uint64_t>(std::llround(c.budget_epochs * static_cast<double>(batches_per_epoch))));
    } else if (c.budget_minutes > 0) {
      length_ = c.epochs > 0 ? c.epochs : 1.0;  // schedules that count epochs need c.epochs (checked)
      bound_steps_ = static_cast<std::uint64_t>(c.epochs) * batches_per_epoch;
    } else {
      length_ = c.epochs;
    }
  }

  bool budgeted() const { return c_.budget_epochs > 0 || c_.budget_minutes > 0; }

  /// The epochs the loop may begin: the budget ends budget runs, mid-epoch if need be.
  int epoch_bound() const {
    if (c_.budget_epochs > 0) return std::numeric_limits<int>::max();
    if (c_.budget_minutes > 0 && c_.epochs == 0) return std::numeric_limits<int>::max();
    return c_.epochs;
  }

  /// The learning rate of the step about to be taken, the run's `step`-th (0-based), batch
  /// `batch` of epoch `epoch`, `elapsed` seconds into the run. Sets last_step().
  double rate(double base_lr, int epoch, std::size_t batch, std::uint64_t step, double elapsed) {
    if (!budgeted()) {
      double lr = schedule_.lr(base_lr, epoch, static_cast<double>(batch) / batches_, c_.epochs);
      if (c_.warmup > 0) lr *= model::warmup_factor((epoch + (batch + 1.0) / batches_) / c_.epochs, c_.warmup);
      return lr;
    }
    double p = 0;
    if (total_steps_) {
      p = static_cast<double>(step + 1) / static_cast<double>(total_steps_);
    } else {
      const double available = c_.budget_minutes * 60.0 - reserve();
      p = available > 0 ? (elapsed + step_seconds()) / available : 1.0;
      if (bound_steps_) p = std::max(p, static_cast<double>(step + 1) / static_cast<double>(bound_steps_));
    }
    p = std::min(1.0, p);
    last_step_ = p >= 1.0;
    progress_ = p;
    return schedule_.lr_at(base_lr, p, length_) * model::warmup_factor(p, c_.warmup);
  }

  /// The step just taken was the budget's last: the run validates, checkpoints and ends.
  bool last_step() const { return last_step_; }
  /// The progress of the last step (budget runs).
  double progress() const { return progress_; }
  /// Steps left (--budget-epochs) for the progress line; 0 otherwise.
  std::uint64_t steps_left(std::uint64_t step) const { return total_steps_ > step ? total_steps_ - step : 0; }

  void step_took(double seconds) {
    step_seconds_sum_ += seconds;
    ++steps_timed_;
  }
  void validation_took(double seconds) { validation_seconds_ = seconds; }

 private:
  double step_seconds() const { return steps_timed_ ? step_seconds_sum_ / steps_timed_ : 0.0; }
  double reserve() const {
    if (validation_seconds_ >= 0) return validation_seconds_;
    return 0.5 * step_seconds() * static_cast<double>(val_batches_) * (c_.ema > 0 ? 2 : 1);
  }

  const TrainConfig& c_;
  const model::Schedule& schedule_;
  std::size_t batches_;
  std::size_t val_batches_;
  double length_ = 1;              // T: the run's length in epochs, for the schedule
  std::uint64_t total_steps_ = 0;  // --budget-epochs: the run's steps
  std::uint64_t bound_steps_ = 0;  // --budget with --epochs: the bound's steps
  double step_seconds_sum_ = 0;
  std::uint64_t steps_timed_ = 0;
  double validation_seconds_ = -1;  // -1: none measured yet in this process
  bool last_step_ = false;
  double progress_ = 0;
};

}  // namespace

nlohmann::json to_json(const TrainConfig& c) {
  return {{"train", c.train}, {"val", c.val}, {"val_split", c.val_split}, {"model", c.model}, {"aug", c.aug},
          {"epochs", c.epochs}, {"batch", c.batch}, {"chunks", c.chunks}, {"optimizer", c.optimizer}, {"lr", c.lr},
          {"schedule", c.schedule}, {"regularizer", c.regularizer}, {"weight_decay", c.weight_decay},
          {"early_stop", c.early_stop}, {"seed", c.seed}, {"threads", c.threads}, {"cache_mb", c.cache_mb},
          {"ema", c.ema}, {"snapshots", c.snapshots}, {"init", c.init}, {"freeze", c.freeze},
          {"budget_minutes", c.budget_minutes}, {"budget_epochs", c.budget_epochs}, {"warmup", c.warmup},
          {"label_smoothing", c.label_smoothing}, {"val_views", c.val_views}, {"out", c.out}};
}

TrainConfig train_config_from_json(const nlohmann::json& j) {
  TrainConfig c;
  try {
    c.train = j.at("train");
    c.val = j.at("val");
    c.val_split = j.at("val_split");
    if (j.contains("split_seed")) c.split_seed = j.at("split_seed").get<std::uint64_t>();
    c.model = j.at("model");
    c.aug = j.at("aug");
    c.epochs = j.at("epochs");
    c.batch = j.at("batch");
    c.chunks = j.value("chunks", 8);  // runs before the setting: the fixed 8
    c.optimizer = j.at("optimizer");
    c.lr = j.at("lr");
    c.schedule = j.at("schedule");
    c.regularizer = j.at("regularizer");
    c.weight_decay = j.at("weight_decay");
    c.early_stop = j.at("early_stop");
    c.seed = j.at("seed");
    c.threads = j.at("threads");
    c.cache_mb = j.at("cache_mb");
    c.ema = j.value("ema", 0.0);
    c.snapshots = j.value("snapshots", 0);
    c.freeze = j.value("freeze", 0);  // absent from the config.json of runs before --freeze
    c.init = j.value("init", std::string());
    // Absent from the config.json of runs before budgets, warm-up and label smoothing: off.
    c.budget_minutes = j.value("budget_minutes", 0.0);
    c.budget_epochs = j.value("budget_epochs", 0.0);
    c.warmup = j.value("warmup", 0.0);
    c.label_smoothing = j.value("label_smoothing", 0.0);
    c.val_views = j.value("val_views", std::string("center"));  // runs before --val-views: the centre only
    c.out = j.at("out");
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(std::string("config.json of the run to resume is incomplete or malformed: ") + e.what());
  }
  return c;
}

/// The epochs already in a run's metrics.csv (for the curves of a resumed run).
std::vector<EpochMetrics> read_history(const fs::path& path, int epochs) {
  std::vector<EpochMetrics> history;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (static_cast<int>(history.size()) < epochs && std::getline(in, line)) {
    EpochMetrics m;
    if (std::sscanf(line.c_str(), "%*d,%lf,%lf,%lf,%lf", &m.train_loss, &m.train_accuracy, &m.val_loss,
                    &m.val_accuracy) == 4)
      history.push_back(m);
  }
  return history;
}

/// Cuts metrics.csv to its header and first `epochs` rows (written atomically).
static void keep_metrics_rows(const fs::path& path, int epochs) {
  std::ifstream in(path);
  if (!in) return;
  std::string text, line;
  for (int row = 0; row <= epochs && std::getline(in, line); ++row) text += line + "\n";
  in.close();
  const fs::path temp = path.string() + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << text;
    if (!out.flush()) throw IoError(temp.string() + ": cannot write");
  }
  fs::rename(temp, path);
}

/// Removes the temporary files of checkpoint writes that a killed process left behind
/// (".last.ckpt.tmp-PID-N-A", see model/checkpoint.cpp); the run folder belongs to one run.
static void remove_stale_checkpoint_temps(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 1 && name[0] == '.' && name.find(".ckpt.tmp-") != std::string::npos) fs::remove(entry.path(), ec);
  }
}

std::vector<int> plan_snapshots(int snapshots, int epochs, model::Schedule& schedule) {
  if (snapshots <= 0) return {};
  const std::string k = std::to_string(snapshots);
  if (schedule.kind == model::ScheduleKind::constant) {
    if (epochs % snapshots != 0)
      throw ConfigError("--snapshots " + k + " without a --schedule trains " + k + " cosine cycles of equal length, so --epochs (" +
                        std::to_string(epochs) + ") must be a multiple of " + k + "; or give a cyclic schedule (restarts:T0:TMULT or cyclic:MAX:PERIOD)");
    schedule = model::parse_schedule("restarts:" + std::to_string(epochs / snapshots) + ":1");
  } else if (schedule.kind != model::ScheduleKind::restarts && schedule.kind != model::ScheduleKind::cyclic) {
    throw ConfigError("--snapshots needs a schedule with cycles (restarts:T0:TMULT or cyclic:MAX:PERIOD) or none, not " +
                      model::print_schedule(schedule) + ": snapshots are taken where the learning rate is at its lowest");
  }
  std::vector<int> ends = schedule.cycle_ends(epochs);
  if (static_cast<int>(ends.size()) < snapshots)
    throw ConfigError("--snapshots " + k + ": the schedule " + model::print_schedule(schedule) + " ends only " +
                      std::to_string(ends.size()) + " cycle(s) within " + std::to_string(epochs) +
                      " epochs; train longer or use shorter cycles");
  ends.erase(ends.begin(), ends.end() - snapshots);
  return ends;
}

TrainSummary train(const TrainConfig& c, const std::function<void(const std::string&)>& log_line, bool resume,
                   const std::atomic<bool>* stop, const ProgressSink& progress, Communicator* comm) {
  const auto run_start = Clock::now();
  // Data-parallel over the processes of an mpirun job (pipeline/data_parallel.hpp); a plain run
  // is one process with the same code. Only rank 0 prints and writes the run folder.
  const auto local_comm = comm ? nullptr : make_local_communicator();
  Communicator& world = comm ? *comm : *local_comm;
  if (c.chunks < 1 || c.chunks > model::ChunkLayout::kLargestChunkCount)
    throw ConfigError("--chunks must be in [1, " + std::to_string(model::ChunkLayout::kLargestChunkCount) + "], got " +
                      std::to_string(c.chunks));
  DataParallel parallel(world, c.chunks);
  const bool writer = world.root();
  const std::function<void(const std::string&)> log =
      writer ? log_line : std::function<void(const std::string&)>([](const std::string&) {});
  const model::FlushDenormals flush_denormals;  // see model/parallel.hpp: decayed weights must not crawl
  const bool open_ended = c.budget_minutes > 0 && c.epochs == 0;  // --budget without an epoch bound
  if (c.epochs < 1 && !open_ended && !(c.budget_epochs > 0))
    throw ConfigError("--epochs must be at least 1, got " + std::to_string(c.epochs));
  if (!(c.lr > 0) || !std::isfinite(c.lr)) throw ConfigError("--lr must be a positive number");
  if (c.out.empty()) throw ConfigError("--out RUNDIR is required");
  if (!(c.ema >= 0 && c.ema < 1)) throw ConfigError("--ema must be in [0, 1) (e.g. 0.999), got " + std::to_string(c.ema));
  if (c.snapshots < 0) throw ConfigError("--snapshots must be >= 0, got " + std::to_string(c.snapshots));
  if (!(c.budget_minutes >= 0) || !std::isfinite(c.budget_minutes))
    throw ConfigError("--budget must be a number of minutes > 0 (e.g. 10 or 0.5)");
  if (!(c.budget_epochs >= 0) || !std::isfinite(c.budget_epochs))
    throw ConfigError("--budget-epochs must be a number of epochs > 0 (e.g. 7.5)");
  if (c.budget_minutes > 0 && c.budget_epochs > 0)
    throw ConfigError("give --budget MINUTES or --budget-epochs E, not both");
  if (c.val_views != kAutoValViews && c.val_views != "center" && c.val_views != "flip")
    throw ConfigError("--val-views must be auto, center or flip, not '" + c.val_views + "'");
  if (!(c.warmup >= 0 && c.warmup < 1))
    throw ConfigError("--warmup is a fraction of the run in [0, 1) (e.g. 0.05), got " + format_number(c.warmup));
  if (!(c.label_smoothing >= 0 && c.label_smoothing < 1))
    throw ConfigError("--label-smoothing must be in [0, 1) (e.g. 0.1), got " + format_number(c.label_smoothing));
  auto schedule = model::parse_schedule(c.schedule);
  if (c.warmup > 0 && schedule.kind == model::ScheduleKind::onecycle)
    throw ConfigError("onecycle has its own warm-up (its WARM field, e.g. onecycle:0.3): drop --warmup");
  if (open_ended && counts_epochs(schedule))
    throw ConfigError("the schedule " + model::print_schedule(schedule) +
                      " counts epochs: with --budget give --epochs N too (the run's upper bound, which its epochs "
                      "refer to), or use cosine, onecycle or constant, which follow the budget");
  if (c.snapshots > 0 && (c.budget_minutes > 0 || c.budget_epochs > 0))
    throw ConfigError("--snapshots is taken at cycle ends counted in whole epochs: use it with --epochs, not a budget");
  const std::vector<int> snapshot_epochs = plan_snapshots(c.snapshots, c.epochs, schedule);
  const auto regularizer = model::parse_regularizer(c.regularizer);
  model::OptimizerOptions optimizer_options;
  optimizer_options.weight_decay = c.weight_decay;
  auto optimizer = model::make_optimizer(c.optimizer, optimizer_options);

  // Data: the train set, and a validation set given or split off it (stratified, by seed).
  Dataset train_data = open_dataset(c.train, log);
  Dataset val_data;
  if (!c.val.empty()) {
    val_data = open_dataset(c.val, log);
    if (val_data.class_names != train_data.class_names)
      throw DataError(c.val, "its classes differ from the training set's (" + c.train + ")");
  } else {
    auto split = split_stratified(train_data, c.val_split, c.split_seed.value_or(c.seed));
    train_data = std::move(split.train);
    val_data = std::move(split.val);
  }
  const int classes = static_cast<int>(train_data.class_names.size());
  if (world.size() > 1) {
    const int most = max_processes(c.batch, c.chunks);
    if (world.size() > most)
      throw ConfigError("data-parallel training cuts every batch into " + std::to_string(most) + " chunks (--batch " +
                        std::to_string(c.batch) + ", --chunks " + std::to_string(c.chunks) +
                        ") and each process needs one at least: start at most " + std::to_string(most) +
                        " processes, not " + std::to_string(world.size()) + ", or give more --chunks");
    // Every process must train the same thing on the same data before anything runs.
    nlohmann::json settings = to_json(c);
    for (const char* speed : {"threads", "cache_mb"}) settings.erase(speed);
    check_agreement(world, {{"version", "augflow " AUGFLOW_VERSION_STRING},
                            {"settings", settings.dump()},
                            {"data", listing_digest({train_data, val_data})},
                            {"resume", resume ? "yes" : "no"}});
  }

  // Defaults that follow the data (pipeline/defaults.hpp): only for what was not given.
  // With --init, "auto" means the file's own network (an empty model_text).
  const bool auto_model = c.model == kAutoModel && c.init.empty(), auto_aug = c.aug.empty();
  std::string aug = c.aug, model_text = c.model == kAutoModel && !c.init.empty() ? std::string() : c.model;
  if (auto_model || auto_aug) {
    const DataDefaults defaults = choose_data_defaults(train_data);
    if (auto_aug) aug = defaults.aug;
    if (auto_model) model_text = defaults.model;
    log(defaults.why + ": " + (auto_model ? "model " + model_text : std::string()) +
        (auto_model && auto_aug ? ", " : "") + (auto_aug ? "augmentation '" + aug + "'" : "") +
        " (give --model/--aug to choose yourself)");
  }
  auto train_pipeline = std::make_shared<const augment::Pipeline>(augment::parse_pipeline_any(aug));
  auto val_pipeline = std::make_shared<const augment::Pipeline>(augment::parse_pipeline(validation_spec(*train_pipeline)));
  const bool val_mirror = validates_with_mirror(c.val_views, *train_pipeline);
  if (val_mirror)
    log("validation views: the centre crop and its mirror, probabilities averaged (augflow eval's flip view" +
        std::string(c.val_views == kAutoValViews ? ", since the training flips images" : "") +
        "; --val-views center for the centre only)");

  LoaderOptions train_options;
  train_options.batch_size = c.batch;
  train_options.threads = c.threads;
  train_options.inline_loading = c.inline_loading;
  train_options.seed = c.seed;
  train_options.cache_mb = c.cache_mb;
  train_options.shared_cache = c.shared_cache;
  train_options.last_epoch = c.budget_epochs > 0 ? static_cast<std::uint64_t>(std::ceil(c.budget_epochs)) - 1
                             : open_ended     ? ~0ull
                                              : static_cast<std::uint64_t>(c.epochs - 1);
  // Each process loads only the samples of its chunks of every batch. Several processes learn
  // each other's unusable files at an epoch's end (share_unusable), so the next epoch's order
  // is fixed only then, not early.
  train_options.batch_share = parallel.loader_share();
  if (world.size() > 1) train_options.prefetch_next_epoch = false;
  LoaderOptions val_options = train_options;
  val_options.shuffle = false;
  val_options.prefetch_next_epoch = false;
  Loader train_loader(std::move(train_data), train_pipeline, train_options, log);
  Loader val_loader(std::move(val_data), val_pipeline, val_options, log);

  const auto shape = train_loader.sample_shape();
  // --init: a trained model's weights to start from (not on resume: last.ckpt has newer ones).
  std::optional<model::Checkpoint> init;
  bool fresh_head = false;
  if (!c.init.empty() && !resume) {
    init = load_model(c.init);
    if (init->input.c != shape.channels)
      throw DataError(c.init, "the model takes " + std::to_string(init->input.c) + "-channel images but " + c.train +
                                  " decodes to " + std::to_string(shape.channels) + " channel(s)");
  }
  if (model_text.empty() && !init)
    throw ConfigError("--model is empty: give a model spec or preset, or --init FILE to take the file's model");
  const model::ModelSpec model_spec = model_text.empty() ? fine_tuning_spec(*init, c.init, classes, fresh_head)
                                                         : model::parse_model_spec(model_text, classes);
  model::Net net(model_spec, {0, shape.channels, shape.height, shape.width}, classes);
  net.initialize(c.seed);
  if (init) {
    if (!model_text.empty()) fresh_head = init->classes != classes;
    load_initial_weights(net, *init, c.init, !fresh_head);
    log("--init " + c.init + ": weights of " + init->model_spec +
        (fresh_head ? "; its " + std::to_string(init->classes) + "-class head is replaced by a fresh fc" +
                          std::to_string(classes) + " for the data's classes"
                    : ""));
  }
  // A negative --freeze counts from the end: -1 trains the head alone, whatever the depth.
  const int layers = static_cast<int>(net.layer_count());
  if (c.freeze < 0 && -c.freeze > layers)
    throw ConfigError("--freeze " + std::to_string(c.freeze) + ": the model has only " + std::to_string(layers) +
                      " layers (" + model::print_model_spec(model_spec) + ")");
  net.freeze(c.freeze < 0 ? layers + c.freeze : c.freeze);
  if (net.frozen() > 0) log(frozen_layers_line(net));
  // What the optimizer steps, the regularizer penalises and EMA averages: every parameter but
  // those of frozen layers (checkpoints still store them all, through params()).
  const std::vector<model::Param*> trainable = net.trainable_params();

  // Polyak/EMA averaging: a shadow copy of every trained parameter, ema <- d*ema + (1-d)*w after
  // each step, evaluated each epoch by swapping it in (batch-norm statistics stay the model's).
  // ema[i] belongs to trainable[i].
  std::vector<model::Tensor> ema;
  if (c.ema > 0)
    for (const model::Param* p : trainable) ema.push_back(p->value);
  auto swap_ema = [&] {
    for (std::size_t i = 0; i < trainable.size(); ++i) std::swap(trainable[i]->value.storage(), ema[i].storage());
  };
  const std::string kEmaPrefix = "ema/";

  if (writer) fs::create_directories(c.out);
  const fs::path out(c.out);
  TrainSummary summary;
  double train_seconds = 0;
  std::size_t train_images = 0;
  int since_best = 0;
  double spent_before = 0;  // wall time of the run before this process (resumed runs)
  const auto elapsed = [&] { return spent_before + std::chrono::duration<double>(Clock::now() - run_start).count(); };
  nlohmann::json time_to_accuracy = nlohmann::json::array();  // {seconds, epoch, val_accuracy} per validation
  std::uint64_t step = 0;
  int first_epoch = 0;
  // An epoch interrupted midway (Ctrl-C): where it stopped and what it had summed so far.
  nlohmann::json partial;
  if (resume) {
    // Everything the remaining epochs depend on comes back: weights, statistics, optimizer
    // moments, the step (dropout masks) and epoch (order, augmentation), the excluded samples.
    const auto ckpt = model::load_checkpoint((out / "last.ckpt").string());
    if (writer) remove_stale_checkpoint_temps(out);
    model::restore_net(net, ckpt);
    model::OptimizerState optimizer_state;
    for (const auto& [name, tensor] : ckpt.optimizer_state) {
      if (name.rfind(kEmaPrefix, 0) != 0) {
        optimizer_state.emplace(name, tensor);
        continue;
      }
      for (std::size_t i = 0; i < trainable.size() && i < ema.size(); ++i)
        if (trainable[i]->name == name.substr(kEmaPrefix.size())) ema[i] = tensor;
    }
    optimizer->load_state(optimizer_state);
    summary.best_ema_val_accuracy = ckpt.meta.value("best_ema_val_accuracy", 0.0);
    first_epoch = static_cast<int>(ckpt.epoch);
    step = static_cast<std::uint64_t>(ckpt.step);
    summary.best_val_accuracy = ckpt.meta.value("best_val_accuracy", 0.0);
    summary.best_epoch = ckpt.meta.value("best_epoch", 0);
    summary.epochs_run = first_epoch;
    summary.final_val_accuracy = ckpt.meta.value("final_val_accuracy", 0.0);
    since_best = ckpt.meta.value("since_best", 0);
    train_seconds = ckpt.meta.value("train_seconds", 0.0);
    train_images = ckpt.meta.value("train_images", std::size_t{0});
    spent_before = ckpt.meta.value("elapsed_seconds", 0.0);  // the budget goes on from here
    time_to_accuracy = ckpt.meta.value("time_to_accuracy", nlohmann::json::array());
    summary.budget_spent = ckpt.meta.value("budget_spent", false);
    restore_unusable(train_loader, ckpt.meta.value("train_unusable", nlohmann::json::array()));
    restore_unusable(val_loader, ckpt.meta.value("val_unusable", nlohmann::json::array()));
    if (ckpt.meta.contains("partial_epoch")) {
      partial = ckpt.meta.at("partial_epoch");
      log("resuming " + c.out + " in epoch " + std::to_string(first_epoch + 1) + " of " + std::to_string(c.epochs) +
          ", at batch " + std::to_string(partial.at("next_batch").get<std::uint64_t>() + 1));
    } else {
      log("resuming " + c.out + " after epoch " + std::to_string(first_epoch) + " of " + std::to_string(c.epochs));
    }
  } else {
    nlohmann::json config = to_json(c);
    // The canonical forms, and what the run derived, for a person reading the run folder.
    config["model"] = model::print_model_spec(model_spec);
    config["aug"] = train_pipeline->print();
    config["val_aug"] = val_pipeline->print();
    config["schedule"] = model::print_schedule(schedule);
    config["regularizer"] = model::print_regularizer(regularizer);
    config["classes"] = train_loader.dataset().class_names;
    config["input"] = {shape.channels, shape.height, shape.width};
    if (c.split_seed) config["split_seed"] = *c.split_seed;
    config["processes"] = world.size();
    if (writer) write_text(out / "config.json", config.dump(2) + "\n");
  }
  std::vector<EpochMetrics> history = resume ? read_history(out / "metrics.csv", first_epoch) : std::vector<EpochMetrics>{};
  // A run killed after writing an epoch's metrics row but before its last.ckpt redoes that
  // epoch: keep only the header and the rows of the epochs last.ckpt holds, so none repeats.
  if (resume && writer) keep_metrics_rows(out / "metrics.csv", first_epoch);
  // The elapsed_seconds column goes last, so readers of the older columns keep working; a run
  // resumed from a metrics.csv without it goes on without it.
  bool elapsed_column = true;
  if (resume) {
    std::ifstream in(out / "metrics.csv");
    std::string header;
    std::getline(in, header);
    elapsed_column = header.find("elapsed_seconds") != std::string::npos;
  }
  // Rank 0 writes the run folder; the other processes' metrics go nowhere.
  std::ofstream file_metrics;
  std::ostringstream no_metrics;
  if (writer) {
    file_metrics.open(out / "metrics.csv", resume ? std::ios::app : std::ios::trunc);
    if (!resume)
      file_metrics << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds"
                   << (ema.empty() ? "" : ",ema_val_loss,ema_val_accuracy") << ",elapsed_seconds\n";
    if (!file_metrics) throw IoError((out / "metrics.csv").string() + ": cannot write");
  }
  std::ostream& metrics = writer ? static_cast<std::ostream&>(file_metrics) : no_metrics;
  const auto save_checkpoint = [&](const fs::path& file, const model::Checkpoint& ckpt) {
    if (writer) model::save_checkpoint(file.string(), ckpt);
  };

  auto checkpoint_of = [&](int epochs_done, std::uint64_t step) {
    model::Checkpoint ckpt;
    model::store_net(net, ckpt);
    ckpt.class_names = train_loader.dataset().class_names;
    ckpt.epoch = epochs_done;
    ckpt.step = static_cast<std::int64_t>(step);
    ckpt.seed = c.seed;
    ckpt.augmentation = train_pipeline->print();
    ckpt.optimizer = c.optimizer;
    ckpt.optimizer_state = optimizer->state();
    for (std::size_t i = 0; i < ema.size(); ++i) ckpt.optimizer_state[kEmaPrefix + trainable[i]->name] = ema[i];
    ckpt.meta = {{"best_val_accuracy", summary.best_val_accuracy}, {"best_epoch", summary.best_epoch},
                 {"final_val_accuracy", summary.final_val_accuracy}, {"since_best", since_best},
                 {"train_seconds", train_seconds}, {"train_images", train_images},
                 {"best_ema_val_accuracy", summary.best_ema_val_accuracy},
                 {"elapsed_seconds", elapsed()}, {"time_to_accuracy", time_to_accuracy},
                 {"budget_spent", summary.budget_spent},
                 {"train_unusable", unusable_of(train_loader, static_cast<std::uint64_t>(epochs_done))},
                 {"val_unusable", unusable_of(val_loader, 0)}};
    return ckpt;
  };

  StepBuffers buffers;
  const std::size_t batches_per_epoch =
      std::max<std::size_t>(1, (train_loader.dataset().size() + c.batch - 1) / c.batch);
  double base_lr = c.lr;  // control.json may change it
  const std::size_t val_batches =
      std::max<std::size_t>(1, (val_loader.dataset().size() + c.batch - 1) / c.batch);
  Pace pace(c, schedule, batches_per_epoch, val_batches);
  // The total shown in log lines: epochs, or the epochs a budget allows at most ("?": the clock decides).
  const std::string epochs_text = c.budget_epochs > 0 ? format_number(c.budget_epochs)
                                  : pace.epoch_bound() == std::numeric_limits<int>::max() ? std::string("?")
                                                                                         : std::to_string(c.epochs);
  for (int epoch = first_epoch; epoch < pace.epoch_bound() && !summary.interrupted && !summary.budget_spent;
       ++epoch) {
    const bool continuing = !partial.is_null();  // the epoch an interrupted run stopped in
    if (continuing) {
      base_lr = partial.at("base_lr");  // control.json was applied when the epoch began
    } else {
      // Rank 0 reads control.json; every process follows its decision.
      bool stop_requested = writer && apply_control(out, epoch, base_lr, log);
      if (world.size() > 1) {
        const auto decided = nlohmann::json::parse(parallel.broadcast(nlohmann::json{{"lr", base_lr}, {"stop", stop_requested}}.dump()));
        base_lr = decided.at("lr");
        stop_requested = decided.at("stop");
      }
      if (stop_requested) {
        summary.stopped_early = true;
        break;
      }
    }
    const auto start = Clock::now();
    double loss_sum = 0, lr = base_lr, seconds_before = 0;
    std::size_t correct = 0, images = 0, batch_index = 0;
    std::uint64_t first_batch = 0;
    if (continuing) {
      first_batch = partial.at("next_batch");
      loss_sum = partial.at("loss_sum");
      correct = partial.at("correct");
      images = partial.at("images");
      batch_index = partial.at("batches");
      seconds_before = partial.at("seconds");
    }
    train_loader.start_epoch(static_cast<std::uint64_t>(epoch), first_batch);
    if (continuing) {
      // Bad files the interrupted part of the epoch found: excluded from the next epochs, as in
      // an uninterrupted run (this epoch's order, fixed above, did not exclude them).
      restore_unusable(train_loader, partial.at("train_unusable_found"));
      partial = nullptr;
    }
    std::uint64_t next_batch = 0;  // the batch an interruption leaves unprocessed
    auto step_start = Clock::now();
    // The epoch's global batches, one step each. This process holds a share of each (all of it
    // when alone); a batch of which none of its samples arrived still takes part in the step.
    const std::size_t epoch_positions = train_loader.epoch_positions(static_cast<std::uint64_t>(epoch));
    const std::uint64_t global_batches = (epoch_positions + c.batch - 1) / c.batch;
    std::optional<Batch> pending;
    bool loader_done = false;
    for (std::uint64_t k = first_batch; k < global_batches; ++k) {
      if (!pending && !loader_done) {
        pending = train_loader.next();
        loader_done = !pending;
      }
      const Batch* local = pending && pending->index() == k ? &*pending : nullptr;
      const std::size_t batch_positions = std::min<std::size_t>(c.batch, epoch_positions - k * c.batch);
      model::BatchPartition partition = parallel.partition(local, batch_positions);
      const double planned_lr = pace.rate(base_lr, epoch, batch_index, step, elapsed());
      const StepAgreement agreed = parallel.agree(partition, stop && stop->load(), planned_lr, pace.last_step());
      if (agreed.stop) {
        summary.interrupted = true;
        next_batch = k;
        break;
      }
      if (agreed.samples == 0) {  // every file of the batch was unusable
        if (local) pending.reset();
        continue;
      }
      // The step: this process's share forward, the loss over the whole batch, backward (the
      // layers add every process's chunk partials in one fixed order), the same update everywhere.
      const auto [batch_loss, batch_correct] =
          forward_backward(net, parallel, partition, local, shape, agreed.samples, c, step, buffers);
      if (local) pending.reset();  // its buffer goes back to the loader
      const double penalty = model::apply_regularizer(regularizer, trainable);
      if (!std::isfinite(batch_loss) || !std::isfinite(penalty))
        throw Error("training diverged at epoch " + std::to_string(epoch + 1) + ", batch " +
                    std::to_string(batch_index + 1) + ": the loss is " + std::to_string(batch_loss / agreed.samples) +
                    ". Try a smaller --lr (now " + std::to_string(c.lr) + "), a schedule, or batch norm; " +
                    (epoch > 0 ? (out / "last.ckpt").string() + " holds the last good epoch" : "no epoch finished"));
      lr = agreed.lr;
      optimizer->step(trainable, static_cast<float>(lr));
      update_ema(ema, trainable, c.ema);
      loss_sum += batch_loss;
      correct += batch_correct;
      images += static_cast<std::size_t>(agreed.samples);
      ++step;
      ++batch_index;
      const auto now = Clock::now();
      pace.step_took(std::chrono::duration<double>(now - step_start).count());
      step_start = now;
      if (progress && writer) {
        const double epoch_seconds = std::chrono::duration<double>(now - start).count();
        const double rate = epoch_seconds > 0 ? images / epoch_seconds : 0;
        const double left_in_epoch = std::max<double>(0, batches_per_epoch - batch_index) * c.batch;
        const double later_epochs = static_cast<double>(c.epochs - epoch - 1) * batches_per_epoch * c.batch;
        double eta = rate > 0 ? (left_in_epoch + later_epochs) / rate : 0;
        if (c.budget_minutes > 0) eta = std::max(0.0, c.budget_minutes * 60.0 - elapsed());
        if (c.budget_epochs > 0) eta = rate > 0 ? static_cast<double>(pace.steps_left(step)) * c.batch / rate : 0;
        const int shown_epochs = c.budget_epochs > 0 ? static_cast<int>(std::ceil(c.budget_epochs)) : c.epochs;
        progress({epoch + 1, shown_epochs, batch_index, batches_per_epoch, loss_sum / std::max<std::size_t>(1, images),
                  rate, eta});
      }
      if (pace.budgeted() && agreed.last_step) {
        // The budget is spent, with the schedule at its end value: this (partial) epoch is
        // validated and checkpointed like a whole one, and the run ends.
        summary.budget_spent = true;
        train_loader.stop();
        break;
      }
    }
    pending.reset();
    // Unusable files any process found in this epoch leave the next epoch's order on all.
    parallel.share_unusable(train_loader);
    if (summary.interrupted) {
      if (batch_index == 0) {
        train_loader.stop();
        log("interrupted during epoch " + std::to_string(epoch + 1) + ": " + (out / "last.ckpt").string() +
            " holds epoch " + std::to_string(epoch) + "; continue with: augflow train --resume " + c.out);
        break;
      }
      // Mid-epoch: last.ckpt takes the weights after `batch_index` steps and where the epoch
      // stands, so --resume goes on from the next batch and ends with the bytes of an
      // uninterrupted run (best.ckpt and metrics.csv stay those of the last whole epoch).
      auto ckpt = checkpoint_of(epoch, step);  // train_unusable: what this epoch's order excludes
      // What this epoch found (what the next epoch's order excludes beyond it); bad files that
      // an early start of the next epoch found are left out, to be found again, as at an
      // epoch's end.
      const auto order_excluded = train_loader.exclusions_for(static_cast<std::uint64_t>(epoch));
      const auto next_excluded = train_loader.exclusions_for(static_cast<std::uint64_t>(epoch) + 1);
      nlohmann::json found = nlohmann::json::array();
      for (const auto& [index, entry] : train_loader.bad_files().entries())
        if (index < next_excluded.size() && next_excluded[index] && !order_excluded[index])
          found.push_back({index, entry.second});
      ckpt.meta["partial_epoch"] = {
          {"next_batch", next_batch}, {"batches", batch_index}, {"loss_sum", loss_sum}, {"correct", correct},
          {"images", images}, {"base_lr", base_lr}, {"train_unusable_found", found},
          {"seconds", seconds_before + std::chrono::duration<double>(Clock::now() - start).count()}};
      train_loader.stop();
      save_checkpoint(out / "last.ckpt", ckpt);
      log("interrupted during epoch " + std::to_string(epoch + 1) + " after batch " + std::to_string(batch_index) +
          " of " + std::to_string(batches_per_epoch) + ": " + (out / "last.ckpt").string() +
          " holds the weights so far; continue with: augflow train --resume " + c.out);
      break;
    }
    const double seconds = seconds_before + std::chrono::duration<double>(Clock::now() - start).count();
    train_seconds += seconds;
    train_images += images;
    const auto validation_start = Clock::now();
    const EpochStats val = evaluate(net, val_loader, c.seed, val_mirror, parallel);
    parallel.share_unusable(val_loader);  // the next validation's order leaves them out on every process
    const double train_loss = images ? loss_sum / images : 0;
    const double train_accuracy = images ? static_cast<double>(correct) / images : 0;
    metrics << epoch + 1 << "," << train_loss << "," << train_accuracy << "," << val.loss << "," << val.accuracy
            << "," << lr << "," << seconds;
    if (!ema.empty()) {
      swap_ema();
      const EpochStats ema_val = evaluate(net, val_loader, c.seed, val_mirror, parallel);
      model::Checkpoint ema_ckpt;
      model::store_net(net, ema_ckpt);
      ema_ckpt.class_names = train_loader.dataset().class_names;
      ema_ckpt.epoch = epoch + 1;
      ema_ckpt.seed = c.seed;
      ema_ckpt.augmentation = train_pipeline->print();
      ema_ckpt.meta = {{"ema", c.ema}};
      swap_ema();
      save_checkpoint(out / "ema.ckpt", ema_ckpt);
      summary.best_ema_val_accuracy = std::max(summary.best_ema_val_accuracy, ema_val.accuracy);
      metrics << "," << ema_val.loss << "," << ema_val.accuracy;
      log("  ema weights: val loss " + std::to_string(ema_val.loss) + " acc " + std::to_string(ema_val.accuracy));
    }
    // The epochs done when this accuracy was reached: fractional for a budget's last partial epoch.
    const double epochs_done = summary.budget_spent && batch_index < batches_per_epoch
                                   ? epoch + static_cast<double>(batch_index) / batches_per_epoch
                                   : epoch + 1.0;
    time_to_accuracy.push_back({{"seconds", elapsed()}, {"epoch", epochs_done}, {"val_accuracy", val.accuracy}});
    if (elapsed_column) metrics << "," << time_to_accuracy.back().at("seconds").get<double>();
    metrics << "\n";
    metrics.flush();
    history.push_back({train_loss, train_accuracy, val.loss, val.accuracy});
    if (writer) write_curves((out / "curves.png").string(), history);
    char line[256];
    std::snprintf(line, sizeof line,
                  "epoch %d/%s: train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.3g | %.0f images/s",
                  epoch + 1, epochs_text.c_str(), train_loss, train_accuracy, val.loss, val.accuracy, lr,
                  seconds > 0 ? images / seconds : 0.0);
    log(line);
    if (summary.budget_spent)
      log("budget spent after " + format_number(epochs_done) + " epochs (" + format_number(elapsed()) +
          " s): the schedule is at its end value, lr " + format_number(lr));

    summary.epochs_run = epoch + 1;
    summary.final_val_accuracy = val.accuracy;
    const bool best = epoch == 0 || val.accuracy > summary.best_val_accuracy;
    if (best) {
      summary.best_val_accuracy = val.accuracy;
      summary.best_epoch = epoch + 1;
      since_best = 0;
    } else {
      ++since_best;
    }
    const auto ckpt = checkpoint_of(epoch + 1, step);
    // last.ckpt is the commit point of the epoch, so it is written last: a crash (SIGKILL,
    // power loss) before it makes --resume redo this epoch, which rewrites best.ckpt and the
    // snapshot with the same bytes; written first, a crash between the writes would lose them.
    if (best) save_checkpoint(out / "best.ckpt", ckpt);
    const auto snapshot = std::find(snapshot_epochs.begin(), snapshot_epochs.end(), epoch + 1);
    if (snapshot != snapshot_epochs.end()) {
      const fs::path file = out / ("snapshot-" + std::to_string(snapshot - snapshot_epochs.begin() + 1) + ".ckpt");
      save_checkpoint(file, ckpt);
      log("  snapshot " + file.string() + " (end of a learning-rate cycle, lr " + std::to_string(lr) + ")");
    }
    save_checkpoint(out / "last.ckpt", ckpt);
    pace.validation_took(std::chrono::duration<double>(Clock::now() - validation_start).count());
    if (!best && c.early_stop > 0 && since_best >= c.early_stop) {
      summary.stopped_early = true;
      log("early stop: no better validation accuracy for " + std::to_string(c.early_stop) + " epochs");
      break;
    }
  }
  train_loader.stop();
  summary.train_images_per_second = train_seconds > 0 ? train_images / train_seconds : 0;
  summary.skipped_files = train_loader.bad_files().count() + val_loader.bad_files().count();
  if (summary.skipped_files) {
    // Each list names its split; with both, the total that summary.json's skipped_files holds.
    const std::size_t train_skipped = train_loader.bad_files().count(), val_skipped = val_loader.bad_files().count();
    if (train_skipped) log("training data: " + train_loader.bad_files().summary());
    if (val_skipped) log("validation data: " + val_loader.bad_files().summary());
    if (train_skipped && val_skipped)
      log(std::to_string(summary.skipped_files) + " files skipped in all (" + std::to_string(train_skipped) +
          " training, " + std::to_string(val_skipped) + " validation)");
  }
  nlohmann::json summary_json = {
      {"best_val_accuracy", summary.best_val_accuracy}, {"best_epoch", summary.best_epoch},
      {"epochs_run", summary.epochs_run}, {"final_val_accuracy", summary.final_val_accuracy},
      {"train_images_per_second", summary.train_images_per_second}, {"skipped_files", summary.skipped_files},
      {"stopped_early", summary.stopped_early}, {"interrupted", summary.interrupted}};
  if (!ema.empty()) summary_json["best_ema_val_accuracy"] = summary.best_ema_val_accuracy;
  for (std::size_t k = 0; k < snapshot_epochs.size(); ++k)
    if (snapshot_epochs[k] <= summary.epochs_run)
      summary.snapshots.push_back((out / ("snapshot-" + std::to_string(k + 1) + ".ckpt")).string());
  if (!snapshot_epochs.empty()) summary_json["snapshots"] = summary.snapshots;
  // What was reached when (the product is accuracy per minute): see docs/train.md, "Training to a time budget".
  summary.elapsed_seconds = elapsed();
  summary_json["budget_seconds"] = c.budget_minutes > 0 ? nlohmann::json(c.budget_minutes * 60.0) : nlohmann::json();
  summary_json["budget_epochs"] = c.budget_epochs > 0 ? nlohmann::json(c.budget_epochs) : nlohmann::json();
  summary_json["budget_spent"] = summary.budget_spent;
  summary_json["train_seconds"] = train_seconds;
  summary_json["elapsed_seconds"] = summary.elapsed_seconds;
  summary_json["time_to_accuracy"] = time_to_accuracy;
  summary_json["world_size"] = world.size();
  summary_json["communication_seconds"] = parallel.communication_seconds();
  summary_json["communication_bytes"] = world.bytes_received();  // received by rank 0
  summary_json["communication_calls"] = world.collectives();
  summary_json["steps"] = step;
  if (writer) write_text(out / "summary.json", summary_json.dump(2) + "\n");
  return summary;
}

}  // namespace augflow::pipeline
