// Model files for the tests of eval and predict: image folders to score, untrained checkpoints
// of a given spec, and a tiny trained model (red vs blue, trained in about a second).
#pragma once

#include <filesystem>
#include <string>

#include "model/checkpoint.hpp"
#include "model/config.hpp"
#include "model/net.hpp"
#include "pipeline/trainer.hpp"
#include "tests/fixtures.hpp"

namespace augflow::test {

/// `classes` class folders of noise images of varied sizes: dir/data/classK/imgN.png.
inline void write_noise_folder(const TempDir& dir, int classes, int per_class) {
  for (int label = 0; label < classes; ++label)
    for (int i = 0; i < per_class; ++i)
      dir.write("data/class" + std::to_string(label) + "/img" + std::to_string(i) + ".png",
                encode(noise_image(40 + 3 * i, 36 + 5 * label, 3, 10 * label + i), ".png"));
}

/// An untrained (randomly initialised) checkpoint of `spec` for `side` x `side` RGB inputs, with
/// classes named class0, class1, ...
inline std::string write_checkpoint(const TempDir& dir, const std::string& name, const std::string& spec, int side,
                                    int classes, const std::string& augmentation, std::uint64_t seed = 1) {
  model::Net net(model::parse_model_spec(spec, classes), {0, 3, side, side}, classes);
  net.initialize(seed);
  model::Checkpoint ckpt;
  model::store_net(net, ckpt);
  for (int k = 0; k < classes; ++k) ckpt.class_names.push_back("class" + std::to_string(k));
  ckpt.augmentation = augmentation;
  const auto path = (dir.path() / name).string();
  model::save_checkpoint(path, ckpt);
  return path;
}

/// A run that learns write_colour_folder's data (dir/data) in a second: fc2, 6 epochs, a
/// quarter held out for validation, the run folder dir/`out`.
inline pipeline::TrainConfig learning_colour_config(const TempDir& dir, const std::string& out = "run") {
  pipeline::TrainConfig c;
  c.train = (dir.path() / "data").string();
  c.val_split = 0.25;
  c.model = "fc2";
  c.aug = "pad_crop(0,32) | hflip | normalize(none)";
  c.epochs = 6;
  c.batch = 8;
  c.lr = 0.01;
  c.out = (dir.path() / out).string();
  return c;
}

/// Trains learning_colour_config's run with `seed` (writing `per_class` images of each colour
/// first when dir/data does not exist) and returns the path of its best.ckpt (in dir/run-SEED).
/// The model tells the colours apart: its classes are "blue" and "red".
inline std::string train_colour_model(const TempDir& dir, std::uint64_t seed = 1, int per_class = 12) {
  if (!std::filesystem::exists(dir.path() / "data")) write_colour_folder(dir, per_class);
  pipeline::TrainConfig c = learning_colour_config(dir, "run-" + std::to_string(seed));
  c.seed = seed;
  pipeline::train(c, [](const std::string&) {});
  return c.out + "/best.ckpt";
}

}  // namespace augflow::test
