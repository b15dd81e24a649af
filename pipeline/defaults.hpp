// Defaults that follow the data: when `augflow train` gets no --model or --aug, the model and
// the augmentation are chosen from what the training images look like, so that a folder of
// 32x32 thumbnails is not upscaled to 224x224 for an ImageNet network and a folder of photos is
// not squeezed through a network built for thumbnails.
//
// The rule (documented for users in `augflow train --help` and the README):
// - images held in memory (IDX files such as Fashion-MNIST, all of one size S x S):
//     augmentation `pad_crop(2,S) | hflip | normalize(none)`, model kSmallImageModel;
// - image files: the median short side m of up to kSurveyFiles files spread over the listing
//   (headers only, nothing decoded):
//   - m <= 64 (thumbnails, CIFAR-like): side S = m rounded to a multiple of 4 (16..64);
//     `center_crop(S,S) | pad_crop(P,S) | hflip | normalize(imagenet)` with P = max(2, S/8)
//     (the CIFAR recipe: 4 pixels at 32), model kSmallImageModel;
//   - m >= 256 (photos): the ResNet recipe at 224, `hflip | scale_crop(256,480,224) |
//     jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)`, model kLargeImageModel;
//   - in between: the same recipe scaled to the data: crop C = the largest multiple of 16 up to
//     7/8 of m, short side L in [8C/7, 15C/7]; model kSmallImageModel below C = 96, else
//     kLargeImageModel.
//
// API: public, part of augflow::pipeline; installed as <augflow/pipeline/defaults.hpp>.
#pragma once

#include <cstddef>
#include <string>

#include "augflow/pipeline/dataset.hpp"

namespace augflow::pipeline {

/// The default model for inputs up to 64-96 pixels a side (see model/config.hpp's presets).
inline constexpr const char* kSmallImageModel = "cnn-small";
/// The default model for photos: a small ResNet whose stem downsamples by 4, as ImageNet ResNets do.
inline constexpr const char* kLargeImageModel = "resnet-photo";
/// Files whose headers the survey reads: enough for a stable median, quick on any folder.
inline constexpr std::size_t kSurveyFiles = 256;

/// What a look at the training images found.
struct ImageSurvey {
  std::size_t probed = 0;       ///< files whose header was read
  std::size_t unreadable = 0;   ///< files whose header could not be read (not counted in the medians)
  int median_width = 0;
  int median_height = 0;
  int median_short_side = 0;
};

/// Reads the headers (the first bytes only) of up to `max_files` files spread evenly over the
/// data set's listing. In-memory data sets need no survey: their size is known.
ImageSurvey survey_images(const Dataset& data, std::size_t max_files = kSurveyFiles);

struct DataDefaults {
  std::string model;  ///< a preset name
  std::string aug;    ///< an augmentation spec
  std::string why;    ///< one line for the run's log: what was found and what it led to
};

/// The model and augmentation the rule above gives for `data` (a training set).
DataDefaults choose_data_defaults(const Dataset& data);

/// The rule's augmentation for files whose median short side is `median_short_side` (exposed
/// for tests and for `augflow bench train --train`).
std::string default_aug_for_files(int median_short_side);

}  // namespace augflow::pipeline
