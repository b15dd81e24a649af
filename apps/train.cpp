// augflow train: train a model from an image folder, a list file or Fashion-MNIST.
#include <iostream>

#include "apps/commands.hpp"
#include "pipeline/trainer.hpp"

namespace augflow::apps {

void add_train_command(CLI::App& app) {
  auto c = std::make_shared<pipeline::TrainConfig>();
  auto* cmd = app.add_subcommand(
      "train",
      "Train a classifier: the loader streams augmented batches into the model; each epoch is\n"
      "validated, logged to RUNDIR/metrics.csv and checkpointed (last.ckpt, best.ckpt);\n"
      "RUNDIR/summary.json holds the result. Example:\n"
      "  augflow train --train fashion-mnist --model cnn-small --epochs 5 --out runs/fm");
  cmd->add_option("--train", c->train, "training data: an image folder (one sub-folder per class), a list file "
                                        "(path,label lines) or fashion-mnist")
      ->required();
  cmd->add_option("--val", c->val, "validation data (same forms); default: split --val-split off --train");
  cmd->add_option("--val-split", c->val_split, "stratified fraction of --train held out for validation")
      ->capture_default_str();
  cmd->add_option("--model", c->model,
                  "model spec: compact tokens (conv32k3p1-bn-relu-pool2-fc10 ...), JSON, or a preset: "
                  "twolayer, mlp, cnn-small, resnet-mini")
      ->capture_default_str();
  cmd->add_option("--aug", c->aug,
                  "augmentation spec; default: 'pad_crop(2,SIZE) | hflip' for IDX data, the ResNet-style spec "
                  "for folders. Validation uses its deterministic counterpart (centre crop, same normalize)");
  cmd->add_option("--epochs", c->epochs, "epochs to train")->capture_default_str();
  cmd->add_option("--batch", c->batch, "samples per batch")->capture_default_str();
  cmd->add_option("--optimizer", c->optimizer, "sgd, momentum, nesterov, adam or adamw")->capture_default_str();
  cmd->add_option("--lr", c->lr, "base learning rate")->capture_default_str();
  cmd->add_option("--schedule", c->schedule,
                  "learning-rate schedule: constant, step:K:GAMMA, exp:GAMMA, cosine[:FLOOR], cyclic:MAX:PERIOD, "
                  "restarts:T0:TMULT[:FLOOR]")
      ->capture_default_str();
  cmd->add_option("--reg", c->regularizer,
                  "weight penalty added to the loss: none, l2:LAMBDA (weight decay 2*LAMBDA with SGD), l1:LAMBDA, "
                  "elastic:LAMBDA[:BETA]")
      ->capture_default_str();
  cmd->add_option("--weight-decay", c->weight_decay, "AdamW's decoupled weight decay (with --optimizer adamw)")
      ->capture_default_str();
  cmd->add_option("--early-stop", c->early_stop,
                  "stop after this many epochs without a better validation accuracy (0: off)")
      ->capture_default_str();
  cmd->add_option("--seed", c->seed, "run seed: split, order, augmentation, initialisation, dropout masks")
      ->capture_default_str();
  cmd->add_option("--threads", c->threads, "loader threads")->capture_default_str();
  cmd->add_option("--cache", c->cache_mb, "keep decoded training images in memory up to this many MB")
      ->capture_default_str();
  cmd->add_option("--out", c->out, "run folder to create (config.json, metrics.csv, last.ckpt, best.ckpt, summary.json)")
      ->required();
  cmd->footer(aug_spec_help());
  cmd->callback([c] {
    single_threaded_opencv();
    const auto summary = pipeline::train(*c, [](const std::string& line) { std::cout << line << std::endl; });
    std::cout << "best validation accuracy " << summary.best_val_accuracy << " at epoch " << summary.best_epoch
              << " of " << summary.epochs_run << "; results in " << c->out << "\n";
  });
}

}  // namespace augflow::apps
