// Deterministic test-time views: the lecture's "average out the randomness" at test time.
//
// - center(resize, size): resize the shorter side to `resize`, take the central size x size crop.
// - tencrop(resize, size): the 4 corners and the centre, then the same five flipped
//   horizontally, in torchvision's FiveCrop order (torchvision's TenCrop mirrors the whole
//   image first, so its 6th view mirrors the top-right crop; here view 5 mirrors view 0):
//     0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre, 5..9 the same, flipped.
// - flip(resize, size): the centre crop and its mirror, 2 views: what training with hflip makes
//   useful at test time (the model saw both orientations), for the price of two.
// - multiscale(scales, size): ten crops at each scale in the given order (ResNet, He et al.
//   2015, section 3.4: scales 224, 256, 384, 480, 640 -> 50 views); view index =
//   scale_index * 10 + crop index above.
// Each crop is computed in source coordinates and only that region is resized (one cv::resize
// per view), so a 4000x6 image never becomes a 320000x480 one. Images smaller than the crop
// are resized up (their shorter side becomes `resize`), never padded.
//
// API: public, part of augflow::augment; installed as <augflow/augment/views.hpp>.
#pragma once

#include <vector>

#include <opencv2/core.hpp>

#include "augflow/augment/args.hpp"
#include "augflow/augment/transform.hpp"

namespace augflow::augment {

struct ViewPlan {
  CropParams crop;   ///< source rectangle and output size
  bool flip = false; ///< mirrored after the crop
  int scale = 0;     ///< the short-side length this view was taken at
};

class Views {
 public:
  explicit Views(const Args& args);

  const Args& args() const { return args_; }
  /// Views per image: 1, 2, 10 or 10 * scales.
  int count() const;
  int crop_size() const { return size_; }
  /// The views of an input of the given size, in the documented order.
  std::vector<ViewPlan> plan(const ImageInfo& in) const;
  /// Applies plan(in) to a decoded image.
  std::vector<cv::Mat> apply(const cv::Mat& image) const;

 private:
  Args args_;
  std::vector<int> scales_;
  int size_ = 224;
  bool ten_ = false;
  bool mirror_ = false;  ///< flip: the centre and its mirror
  /// Views per scale before the mirrored ones (5 for ten crops, 1 otherwise): mirrored view i
  /// mirrors view i - unmirrored().
  int unmirrored() const { return ten_ ? 5 : 1; }
};

/// The geometry shared by scale_crop and the views: the image's shorter side resized to
/// `length` (never materialised) and a size x size crop at offset (x, y) of that resized image.
/// `right`/`bottom` are the largest offsets; source() maps an offset back to source pixels so
/// that offset 0 and the largest offset touch the image's edges exactly.
struct ShortSideCrop {
  ShortSideCrop(const ImageInfo& in, int length, int size);
  CropParams source(int x, int y) const;
  int right = 0;
  int bottom = 0;

 private:
  ImageInfo in_;
  int length_, size_, side_w_, side_h_;
};

/// Crops `params.source` (filling outside the image with `border`, an OpenCV border mode) and
/// resizes it to `params.out`: bilinear, or area averaging when shrinking by 2x or more.
cv::Mat crop_resize(const cv::Mat& image, const CropParams& params, int border);

}  // namespace augflow::augment
