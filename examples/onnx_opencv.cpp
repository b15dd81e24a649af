// Classifies one image with an augflow model exported to ONNX, using OpenCV alone.
// Build: g++ -std=c++17 onnx_opencv.cpp $(pkg-config --cflags --libs opencv4) -o onnx_opencv
// Run:   ./onnx_opencv model.onnx photo.png SIZE CHANNELS MEAN STD
//        (`augflow export` prints them, e.g. 28 1 0 1, or 224 3 0.485,0.456,0.406 0.229,0.224,0.225)
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

std::vector<double> numbers(const char* text) {  // "0.485,0.456,0.406" -> {0.485, 0.456, 0.406}
  std::vector<double> values;
  for (char* end = nullptr;; text = end + 1) {
    values.push_back(std::strtod(text, &end));
    if (*end != ',') return values;
  }
}

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s MODEL.onnx IMAGE SIZE CHANNELS MEAN STD\n", argv[0]);
    return 2;
  }
  const int size = std::atoi(argv[3]), channels = std::atoi(argv[4]);
  const std::vector<double> mean = numbers(argv[5]), std = numbers(argv[6]);
  cv::dnn::Net net = cv::dnn::readNetFromONNX(argv[1]);
  cv::Mat image = cv::imread(argv[2], channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  if (image.empty()) {
    std::fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  // augflow's models take RGB planes (OpenCV decodes BGR) of (pixel / 255 - mean) / std.
  cv::resize(image, image, cv::Size(size, size), 0, 0, cv::INTER_AREA);
  if (channels == 3) cv::cvtColor(image, image, cv::COLOR_BGR2RGB);
  image.convertTo(image, CV_32F, 1.0 / 255);
  std::vector<cv::Mat> planes;
  cv::split(image, planes);
  for (int c = 0; c < channels; ++c) planes[c] = (planes[c] - mean[c % mean.size()]) / std[c % std.size()];
  cv::merge(planes, image);
  net.setInput(cv::dnn::blobFromImage(image));  // HWC float -> 1 x C x H x W
  const cv::Mat logits = net.forward();         // 1 x classes
  cv::Point best;
  cv::minMaxLoc(logits, nullptr, nullptr, nullptr, &best);
  std::printf("class %d (logit %.3f)\n", best.x, logits.at<float>(0, best.x));
  return 0;
}
