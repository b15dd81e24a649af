// Loads a trained model (an augflow checkpoint .ckpt, or an .onnx file augflow exported) and
// classifies one image with the model's own test-time view (centre crop, the normalisation it
// was trained with). Links augflow::pipeline.
//
//   classify MODEL IMAGE [TOP]
//
// Prints the TOP (default 3) most probable classes with their probabilities; exits 1 if the
// image cannot be used (the reason is printed), 2 for a wrong command line.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <augflow/common/error.hpp>
#include <augflow/pipeline/predictor.hpp>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL IMAGE [TOP]\n", argv[0]);
    return 2;
  }
  const int top = argc > 3 ? std::atoi(argv[3]) : 3;
  try {
    namespace ap = augflow::pipeline;
    ap::TestTimeOptions options;
    options.members = {argv[1]};  // several files would make an ensemble
    options.views = "center";
    ap::Predictor predictor(options);
    const auto warn = [](const std::string& message) { std::fprintf(stderr, "warning: %s\n", message.c_str()); };
    predictor.open(ap::open_unlabelled({argv[2]}, warn), warn);
    std::printf("model %s (%d classes), views %s\n", argv[1], predictor.classes(), predictor.views().c_str());
    int status = 1;
    predictor.score(0, [&](const ap::ImageScores& scores) {
      if (!scores.ok()) {
        std::fprintf(stderr, "%s: %s\n", argv[2], scores.error.c_str());
        return;
      }
      for (const int c : ap::top_classes(scores.probs, top))
        std::printf("%-20s %.4f\n", predictor.class_names()[c].c_str(), scores.probs[c]);
      status = 0;
    });
    return status;
  } catch (const augflow::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
