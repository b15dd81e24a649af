// augflow bench train: training and inference speed of a model on Fashion-MNIST-shaped random
// batches (1x28x28, 10 classes): forward + loss + backward + Adam step, and test-mode forward.
#include <chrono>
#include <iostream>

#include <nlohmann/json.hpp>
#include <oneapi/tbb/task_arena.h>

#include "apps/commands.hpp"
#include "apps/fp32_peak.hpp"
#include "common/error.hpp"
#include "common/rng.hpp"
#include "model/kernel_profile.hpp"
#include "model/conv.hpp"
#include "model/loss.hpp"
#include "model/net.hpp"
#include "model/optim.hpp"
#include "model/residual.hpp"
#include "pipeline/defaults.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/loader.hpp"
#include "augment/spec.hpp"

namespace augflow::apps {
namespace {
using Clock = std::chrono::steady_clock;

struct BenchTrainOptions {
  std::string model = "cnn-small";
  int batch = 128;
  int threads = 2;
  int steps = 50;
  int repeats = 3;
  bool per_layer = false;
  bool im2col = false;
  std::string train;  ///< with a data source: the loader-overhead measurement instead
  std::string aug;
  std::string json;
};

/// The loader's cost inside training: one epoch of training steps from batches decoded and
/// augmented beforehand (kept in memory: compute only), then the next epoch streamed through
/// the loader while training, as augflow train does (the loader's threads and the model's
/// share the cores). Reports both times and their ratio.
void run_bench_epoch(const BenchTrainOptions& o) {
  pipeline::Dataset data = pipeline::open_dataset(o.train, [](const std::string& line) { std::cerr << line << "\n"; });
  const int classes = static_cast<int>(data.class_names.size());
  std::string aug = o.aug;
  if (aug.empty())
    aug = pipeline::choose_data_defaults(data).aug;  // what augflow train would use
  pipeline::LoaderOptions lo;
  lo.batch_size = o.batch;
  lo.threads = o.threads;
  lo.seed = 1;
  lo.last_epoch = 1;
  pipeline::Loader loader(std::move(data), std::make_shared<const augment::Pipeline>(augment::parse_pipeline_any(aug)),
                          lo);
  const auto& shape = loader.sample_shape();
  const model::ModelSpec spec = model::parse_model_spec(o.model, classes);
  model::Net net(spec, {0, shape.channels, shape.height, shape.width}, classes);
  net.initialize(1);
  auto optimizer = model::make_optimizer("adam");
  model::Tensor dlogits;
  std::uint64_t step = 0;
  auto train_on = [&](const model::Tensor& x, std::span<const int> labels) {
    const model::ForwardContext ctx{model::Mode::train, 1, step++, 0, nullptr};
    model::softmax_cross_entropy(net.forward(x, ctx), std::vector<int>(labels.begin(), labels.end()), dlogits);
    net.backward(dlogits);
    optimizer->step(net.params(), 1e-3f);
  };
  auto tensor_of = [](const pipeline::Batch& b) {
    const auto& s = b.shape();
    model::Tensor x({b.size(), s.channels, s.height, s.width});
    std::copy(b.data(), b.data() + x.size(), x.data());
    return x;
  };
  // Epoch 0, gathered first (this is the only part whose memory grows with the data set).
  std::vector<std::pair<model::Tensor, std::vector<int>>> batches;
  loader.start_epoch(0);
  while (auto b = loader.next()) batches.emplace_back(tensor_of(*b), std::vector<int>(b->labels().begin(), b->labels().end()));
  std::size_t images = 0;
  for (const auto& [x, labels] : batches) images += labels.size();
  // Warm-up (buffers sized), then the compute-only epoch.
  for (std::size_t i = 0; i < std::min<std::size_t>(3, batches.size()); ++i) train_on(batches[i].first, batches[i].second);
  auto start = Clock::now();
  for (const auto& [x, labels] : batches) train_on(x, labels);
  const double predecoded = std::chrono::duration<double>(Clock::now() - start).count();
  batches.clear();
  start = Clock::now();
  loader.start_epoch(1);
  model::Tensor x;
  while (auto b = loader.next()) {
    const auto& s = b->shape();
    x.resize({b->size(), s.channels, s.height, s.width});
    std::copy(b->data(), b->data() + x.size(), x.data());
    train_on(x, b->labels());
  }
  const double streamed = std::chrono::duration<double>(Clock::now() - start).count();
  const double ratio = predecoded > 0 ? streamed / predecoded : 0;
  std::printf("augflow bench train --train %s: %s, batch %d, %d threads, %zu images\n", o.train.c_str(),
              model::print_model_spec(spec).c_str(), o.batch, o.threads, images);
  std::printf("aug: %s\n", aug.c_str());
  std::printf("epoch from pre-decoded batches: %8.2f s (%.1f images/s)\n", predecoded, images / predecoded);
  std::printf("epoch streamed by the loader:   %8.2f s (%.1f images/s), waited %.1f%%\n", streamed, images / streamed,
              streamed > 0 ? 100 * loader.wait_seconds() / streamed : 0.0);
  std::printf("ratio streamed / pre-decoded: %.3f\n", ratio);
  if (!o.json.empty())
    write_json_report(o.json, {{"epoch_seconds_predecoded", predecoded},
                               {"epoch_seconds_streamed", streamed},
                               {"streamed_over_predecoded", ratio},
                               {"images", images},
                               {"model", model::print_model_spec(spec)},
                               {"aug", aug},
                               {"batch", o.batch},
                               {"threads", o.threads}});
}

/// Every convolution of `net`, those inside residual blocks too, on the im2col + GEMM path.
void use_im2col(model::Net& net) {
  for (std::size_t i = 0; i < net.layer_count(); ++i) {
    if (auto* conv = dynamic_cast<model::Conv2d*>(&net.layer(i))) conv->use_reference();
    if (auto* res = dynamic_cast<model::Residual*>(&net.layer(i))) {
      res->conv1().use_reference();
      res->conv2().use_reference();
      if (res->projection()) res->projection()->use_reference();
    }
  }
}

void run_bench_train(const BenchTrainOptions& o) {
  if (o.batch < 1 || o.batch > 4096) throw ConfigError("--batch must be in [1, 4096]");
  if (o.threads < 1 || o.threads > 256) throw ConfigError("--threads must be in [1, 256]");
  if (!o.train.empty()) return run_bench_epoch(o);
  if (o.steps < 1 || o.repeats < 1) throw ConfigError("--steps and --repeats must be at least 1");
  constexpr int kClasses = 10;
  const model::ModelSpec spec = model::parse_model_spec(o.model, kClasses);
  model::Net net(spec, {0, 1, 28, 28}, kClasses);
  net.initialize(1);
  if (o.im2col) use_im2col(net);
  auto optimizer = model::make_optimizer("adam");

  model::Tensor x({o.batch, 1, 28, 28});
  std::vector<int> labels(o.batch);
  Rng rng({1, 0, 0});
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(rng.normal());
  for (auto& label : labels) label = static_cast<int>(rng.uniform_int(0, kClasses - 1));
  model::Tensor dlogits;
  std::uint64_t step = 0;
  auto train_step = [&] {
    const model::ForwardContext ctx{model::Mode::train, 1, step++, 0, nullptr};
    const auto r = model::softmax_cross_entropy(net.forward(x, ctx), labels, dlogits);
    net.backward(dlogits);
    optimizer->step(net.params(), 1e-3f);
    return r.loss;
  };
  auto infer_step = [&] {
    const model::ForwardContext ctx{model::Mode::test, 1, 0, 0, nullptr};
    return net.forward(x, ctx)[0];
  };

  tbb::task_arena arena(o.threads);
  // Conv and fc kernel times over the timed training runs (not the warm-up, whose first steps
  // create oneDNN's kernels).
  model::KernelProfile kernels;
  auto rate = [&](auto body, model::KernelProfile* profile) {
    std::vector<double> rates;
    arena.execute([&] {
      for (int w = 0; w < 5; ++w) body();  // warm-up: buffers sized, caches filled
      model::attach_kernel_profile(profile);
      for (int r = 0; r < o.repeats; ++r) {
        const auto start = Clock::now();
        for (int s = 0; s < o.steps; ++s) body();
        rates.push_back(static_cast<double>(o.steps) * o.batch /
                        std::chrono::duration<double>(Clock::now() - start).count());
      }
      model::attach_kernel_profile(nullptr);
    });
    return median(rates);
  };
  const double train_rate = rate(train_step, &kernels);
  const double infer_rate = rate(infer_step, nullptr);
  const Fp32Peak peak = measure_fp32_peak(o.threads);
  model::Net::Profile profile;
  if (o.per_layer) {  // one more timed run of training steps, with the clock around each layer
    net.attach_profile(&profile);
    arena.execute([&] {
      for (int s = 0; s < o.steps; ++s) train_step();
    });
    net.attach_profile(nullptr);
  }
  // Training = forward + backward (about twice the forward's multiply-adds); 2 FLOP each. The
  // nominal count, as PyTorch's peer states it: the first layer's input gradient, which
  // neither side computes, is counted in, so the figure compares, not measures the FPU.
  const double gflops = net.flops_per_sample() * 3 * 2 * train_rate / 1e9;

  std::printf("augflow bench train: %s, batch %d, %d threads%s\n", model::print_model_spec(spec).c_str(), o.batch,
              o.threads, o.im2col ? ", convolutions as im2col + GEMM" : "");
  std::printf("train   %9.1f samples/s  (%.1f GFLOP/s)\n", train_rate, gflops);
  std::printf("infer   %9.1f samples/s\n", infer_rate);
  // Per layer kind: the FLOPs each kernel computed over its own time. The fraction of peak is
  // of the FMA loop's rate on the same threads (see apps/fp32_peak.hpp).
  std::printf("peak    %9.1f GFLOP/s  (%d threads x %d FLOP/cycle (%d-float FMAs) x %.2f GHz, the clock an FMA "
              "loop ran at)\n",
              peak.gflops, peak.threads, peak.flop_per_cycle, peak.lanes, peak.ghz());
  nlohmann::json kinds = nlohmann::json::object();
  model::KernelStats conv_fc;
  // Also per CPU second (of all the process's threads) against the per-core peak: on a shared
  // machine the wall-clock figure drops with the load, this one barely does.
  const double core_peak = peak.gflops / peak.threads;
  std::printf("%-14s %10s %10s %9s %14s %9s\n", "kernel", "ms/step", "GFLOP/s", "of peak", "GFLOP/cpu-s", "of core");
  auto kind_row = [&](const char* name, const model::KernelStats& k) {
    if (k.seconds <= 0.0 || k.cpu_seconds <= 0.0) return;
    const double g = k.flops / k.seconds / 1e9;
    const double gc = k.flops / k.cpu_seconds / 1e9;
    const double ms = k.seconds * 1e3 / (static_cast<double>(o.steps) * o.repeats);
    std::printf("%-14s %10.2f %10.1f %8.1f%% %14.1f %8.1f%%\n", name, ms, g, 100 * g / peak.gflops, gc,
                100 * gc / core_peak);
    kinds[name] = {{"ms_per_step", ms},
                   {"gflops", g},
                   {"fraction_of_peak", g / peak.gflops},
                   {"gflops_per_cpu_second", gc},
                   {"fraction_of_core_peak_per_cpu_second", gc / core_peak}};
  };
  kind_row("conv_forward", kernels.conv_forward);
  kind_row("conv_backward", kernels.conv_backward);
  kind_row("fc_forward", kernels.fc_forward);
  kind_row("fc_backward", kernels.fc_backward);
  for (const auto* k : {&kernels.conv_forward, &kernels.conv_backward, &kernels.fc_forward, &kernels.fc_backward}) {
    conv_fc.seconds += k->seconds;
    conv_fc.cpu_seconds += k->cpu_seconds;
    conv_fc.flops += k->flops;
  }
  kind_row("conv_fc", conv_fc);
  const double conv_fc_gflops = conv_fc.seconds > 0 ? conv_fc.flops / conv_fc.seconds / 1e9 : 0.0;
  const double conv_fc_cpu = conv_fc.cpu_seconds > 0 ? conv_fc.flops / conv_fc.cpu_seconds / 1e9 : 0.0;
  nlohmann::json layers = nlohmann::json::array();
  if (o.per_layer) {
    double total = 0.0;
    for (std::size_t i = 0; i < net.layer_count(); ++i)
      total += profile.forward_seconds[i] + profile.backward_seconds[i];
    std::printf("%-4s %-14s %12s %12s %7s\n", "#", "layer", "forward ms", "backward ms", "share");
    for (std::size_t i = 0; i < net.layer_count(); ++i) {
      const double fwd = profile.forward_seconds[i] * 1e3 / o.steps;
      const double bwd = profile.backward_seconds[i] * 1e3 / o.steps;
      const double share = total > 0 ? (fwd + bwd) * o.steps / 1e3 / total : 0.0;
      const std::string token = net.layer(i).spec();
      std::printf("%-4zu %-14s %12.2f %12.2f %6.1f%%\n", i, token.c_str(), fwd, bwd, 100 * share);
      layers.push_back({{"layer", token}, {"forward_ms", fwd}, {"backward_ms", bwd}});
    }
  }
  if (!o.json.empty())
    write_json_report(o.json, {{"train_samples_per_second", train_rate},
                               {"infer_samples_per_second", infer_rate},
                               {"gflops", gflops},
                               {"peak_gflops", peak.gflops},
                               {"peak_ghz", peak.ghz()},
                               {"peak_flop_per_cycle", peak.flop_per_cycle},
                               {"conv_fc_gflops", conv_fc_gflops},
                               {"fraction_of_peak", conv_fc_gflops / peak.gflops},
                               {"fraction_of_core_peak_per_cpu_second", conv_fc_cpu / core_peak},
                               {"kernels", kinds},
                               {"model", model::print_model_spec(spec)},
                               {"batch", o.batch},
                               {"threads", o.threads},
                               {"conv_kernels", o.im2col || !model::DnnlConv::available() ? "im2col" : "onednn"},
                               {"steps", o.steps},
                               {"layers", layers}});
}

}  // namespace

void add_bench_train_command(CLI::App& bench) {
  auto o = std::make_shared<BenchTrainOptions>();
  auto* cmd = bench.add_subcommand(
      "train",
      "Training and inference speed of a model on random Fashion-MNIST-shaped batches (1x28x28,\n"
      "10 classes): forward + softmax cross-entropy + backward + Adam step, and test-mode forward;\n"
      "median of --repeats timed runs of --steps steps after 5 warm-up steps.");
  cmd->add_option("--model", o->model, "model spec or preset (twolayer, mlp, cnn-small, resnet-mini)")
      ->capture_default_str();
  cmd->add_option("--batch", o->batch, "samples per batch")->capture_default_str();
  cmd->add_option("--threads", o->threads, "threads")->capture_default_str();
  cmd->add_option("--steps", o->steps, "timed steps per run")->capture_default_str();
  cmd->add_option("--repeats", o->repeats, "timed runs (the median is reported)")->capture_default_str();
  cmd->add_flag("--per-layer", o->per_layer,
               "also time each layer's forward and backward (milliseconds per step) over one more\n"
               "run of --steps training steps; the JSON report gets a \"layers\" list");
  cmd->add_flag("--im2col", o->im2col,
               "run the convolutions as im2col + Eigen GEMM (the reference path) instead of oneDNN's\n"
               "kernels, to compare the two");
  cmd->add_option("--train", o->train,
                  "measure the loader's cost instead: train one epoch of this data set (folder, list file,\n"
                  "fashion-mnist) from batches decoded and augmented beforehand, then one streamed by the\n"
                  "loader, and report both times and their ratio (JSON: epoch_seconds_predecoded,\n"
                  "epoch_seconds_streamed, streamed_over_predecoded)");
  cmd->add_option("--aug", o->aug,
                  "augmentation spec for --train (default: the one augflow train chooses from the data)");
  cmd->add_option("--json", o->json,
                  "write a JSON report: train_samples_per_second, infer_samples_per_second, gflops,\n"
                  "peak_gflops, fraction_of_peak (of the conv and fc kernels together), kernels, ...");
  cmd->callback([o] { run_bench_train(*o); });
}

}  // namespace augflow::apps
