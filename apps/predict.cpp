// augflow predict: label new, unlabelled images with a trained model or an ensemble.
//
// Rows are written as the loader delivers the images, in input order, so memory is bounded
// by --batch whatever the number of images; the JSON array is written the same way.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "pipeline/predictor.hpp"

namespace augflow::apps {
namespace {

namespace fs = std::filesystem;

struct PredictCommand {
  pipeline::TestTimeOptions options;
  std::vector<std::string> inputs;
  std::string scales;
  int top = 5;
  std::string out;   ///< CSV file; empty: stdout (unless only --json is asked for)
  std::string json;  ///< JSON file; empty: none
};

/// A file written under a temporary name next to its destination and renamed over it by
/// commit(), so a reader never sees half a file and an interrupted run leaves the old one.
class PendingFile {
 public:
  explicit PendingFile(std::string path)
      : path_(std::move(path)), temp_(path_ + ".partial-" + std::to_string(::getpid())), stream_(temp_) {
    if (!stream_) throw IoError(path_ + ": cannot write (does the folder exist, is it writable?)");
  }
  ~PendingFile() {
    if (committed_) return;
    stream_.close();
    std::error_code ignored;
    fs::remove(temp_, ignored);
  }
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  std::ostream& stream() { return stream_; }
  void commit() {
    stream_.close();
    if (!stream_) throw IoError(path_ + ": write failed (disk full?)");
    std::error_code ec;
    fs::rename(temp_, path_, ec);
    if (ec) throw IoError(path_ + ": cannot move the finished file into place: " + ec.message());
    committed_ = true;
  }

 private:
  std::string path_, temp_;
  std::ofstream stream_;
  bool committed_ = false;
};

/// A CSV field, quoted when it holds a comma, quote, line break or edge space (RFC 4180).
std::string csv_field(const std::string& s) {
  const bool plain = s.find_first_of(",\"\r\n") == std::string::npos && (s.empty() || (s.front() != ' ' && s.back() != ' '));
  if (plain) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::string probability_text(float p) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6f", static_cast<double>(p));
  return text;
}

/// CSV: one row per image, `path,class1,probability1,...,classK,probabilityK,status`.
class CsvWriter {
 public:
  CsvWriter(std::ostream& out, int top) : out_(out) {
    out_ << "path";
    for (int r = 1; r <= top; ++r) out_ << ",class" << r << ",probability" << r;
    out_ << ",status\n";
    top_ = top;
  }
  void row(const std::string& path, const std::vector<std::pair<std::string, float>>& top, const std::string& error) {
    out_ << csv_field(path);
    for (int r = 0; r < top_; ++r) {
      if (static_cast<std::size_t>(r) < top.size()) out_ << "," << csv_field(top[r].first) << "," << probability_text(top[r].second);
      else out_ << ",,";
    }
    out_ << "," << csv_field(error.empty() ? "ok" : error) << "\n";
  }

 private:
  std::ostream& out_;
  int top_ = 0;
};

/// JSON: the object of docs/predict.md, its "predictions" array written one element at a time; the
/// counts that are known only at the end ("labelled", "skipped") come after the array.
class JsonWriter {
 public:
  JsonWriter(std::ostream& out, const pipeline::Predictor& predictor, std::size_t images) : out_(out) {
    nlohmann::json models = nlohmann::json::array();
    for (const auto& m : predictor.members()) models.push_back(m.path);
    out_ << "{\n  \"model\": " << models.dump() << ",\n  \"views\": " << nlohmann::json(predictor.views()).dump()
         << ",\n  \"classes\": " << nlohmann::json(predictor.class_names()).dump() << ",\n  \"images\": " << images
         << ",\n  \"predictions\": [";
  }
  void row(const std::string& path, const std::vector<std::pair<std::string, float>>& top, const std::string& error) {
    nlohmann::json j{{"path", path}};
    if (error.empty()) {
      j["top"] = nlohmann::json::array();
      for (const auto& [name, p] : top) j["top"].push_back({{"class", name}, {"probability", p}});
    } else {
      j["error"] = error;
    }
    out_ << (first_ ? "\n    " : ",\n    ") << j.dump();
    first_ = false;
  }
  void finish(std::size_t labelled, std::size_t skipped) {
    out_ << (first_ ? "]" : "\n  ]") << ",\n  \"labelled\": " << labelled << ",\n  \"skipped\": " << skipped << "\n}\n";
  }

 private:
  std::ostream& out_;
  bool first_ = true;
};

/// CLI11 gives an option that takes several values everything up to the next option, so in
/// `predict --model m.ckpt photos/ --top 3` the folder lands in --model. The values are put back
/// in command-line order (CLI11's parse order) and split: after --model's first value, only
/// files ending in .ckpt or .onnx are models; every other path is an input, at its place.
void split_models_and_inputs(const CLI::App& cmd, PredictCommand& command) {
  const CLI::Option* model = cmd.get_option("--model");
  const CLI::Option* inputs = cmd.get_option("inputs");
  const auto model_values = model->results();
  const auto input_values = inputs->results();
  std::size_t next_model = 0, next_input = 0;
  command.options.members.clear();
  command.inputs.clear();
  for (const CLI::Option* option : cmd.parse_order()) {
    if (option == inputs && next_input < input_values.size()) {
      command.inputs.push_back(input_values[next_input++]);
    } else if (option == model && next_model < model_values.size()) {
      const std::string& value = model_values[next_model++];
      std::string ext = fs::path(value).extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
      const bool is_model = command.options.members.empty() || ext == ".ckpt" || ext == ".onnx";
      (is_model ? command.options.members : command.inputs).push_back(value);
    }
  }
  if (command.inputs.empty())
    throw ConfigError("no images given: name image files, folders or list files after the options, e.g. "
                      "augflow predict --model best.ckpt photos/");
}

void run_predict(const PredictCommand& command) {
  single_threaded_opencv();
  pipeline::TestTimeOptions options = command.options;
  if (!command.scales.empty()) options.scales = parse_scales(command.scales);
  if (command.top < 1) throw ConfigError("--top must be at least 1, got " + std::to_string(command.top));
  auto log = [](const std::string& line) { std::cerr << line << "\n"; };

  // Inputs first: a mistyped path is reported before the models are loaded.
  pipeline::Dataset inputs = pipeline::open_unlabelled(command.inputs, log);
  pipeline::Predictor predictor(options);
  const std::size_t images = inputs.size();
  predictor.open(std::move(inputs), log);
  const int top = std::min(command.top, predictor.classes());

  std::unique_ptr<PendingFile> csv_file, json_file;
  std::unique_ptr<CsvWriter> csv;
  std::unique_ptr<JsonWriter> json;
  if (!command.out.empty()) {
    csv_file = std::make_unique<PendingFile>(command.out);
    csv = std::make_unique<CsvWriter>(csv_file->stream(), top);
  } else if (command.json.empty()) {
    csv = std::make_unique<CsvWriter>(std::cout, top);
  }
  if (!command.json.empty()) {
    json_file = std::make_unique<PendingFile>(command.json);
    json = std::make_unique<JsonWriter>(json_file->stream(), predictor, images);
  }

  const auto start = std::chrono::steady_clock::now();
  std::size_t labelled = 0, skipped = 0;
  std::vector<std::pair<std::string, float>> best;
  std::string unreadable;  // the first few unreadable images, for the summary
  constexpr std::size_t kListed = 5;
  predictor.score(0, [&](const pipeline::ImageScores& s) {
    best.clear();
    if (s.ok()) {
      for (int k : pipeline::top_classes(s.probs, top)) best.emplace_back(predictor.class_names()[k], s.probs[k]);
      ++labelled;
    }
    const std::string path = predictor.dataset().describe(s.index);
    if (!s.ok() && ++skipped <= kListed) unreadable += (skipped > 1 ? ", " : "") + path + " (" + s.error + ")";
    if (csv) csv->row(path, best, s.error);
    if (json) json->row(path, best, s.error);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (json) json->finish(labelled, skipped);
  if (csv_file) csv_file->commit();
  if (json_file) json_file->commit();
  std::cout.flush();

  std::fprintf(stderr, "labelled %zu of %zu images in %.2f s (%.1f images/s), views: %s\n", labelled, images, seconds,
               seconds > 0 ? labelled / seconds : 0.0, predictor.views().c_str());
  if (skipped)
    std::fprintf(stderr, "%zu of %zu images could not be read: %s%s; each has a row with its reason\n", skipped,
                 images, unreadable.c_str(), skipped > kListed ? ", ..." : "");
  if (labelled == 0)
    throw DataError(images == 1 ? predictor.dataset().describe(0) : "the inputs",
                    (images == 1 ? std::string("the image could not be read")
                                 : "none of the " + std::to_string(images) + " images could be read") +
                        " (the reasons are above); give JPEG, PNG, BMP, WebP, TIFF or PNM files");
}

}  // namespace

void add_predict_command(CLI::App& app) {
  auto command = std::make_shared<PredictCommand>();
  auto* cmd = app.add_subcommand(
      "predict",
      "Label new, unlabelled images with a trained model: for each image, the --top most probable\n"
      "classes and their probabilities, in the order the images were given. The test-time rules are\n"
      "eval's: dropout off, batch-norm running statistics, probabilities averaged over deterministic\n"
      "views (default: the centre crop the training spec implies), and several --model files form an\n"
      "ensemble whose probabilities are averaged. Inputs are image files, folders (every image below\n"
      "them, sorted by path; no class sub-folders needed) and list files (.csv/.txt/.lst, one path\n"
      "per line, relative to the list; a ',label' after the path is ignored).\n"
      "Output: CSV with one row per image, `path,class1,probability1,...,classK,probabilityK,status`\n"
      "(status: ok, or why the image could not be read), to --out FILE or else to standard output;\n"
      "--json FILE writes the same as JSON. An unreadable image gets a row with its reason and the\n"
      "rest are labelled; a summary goes to standard error. A path on the command line that does not\n"
      "exist is an error (exit 2). Exit status 0 when at least one image was labelled, 1 when none.\n"
      "Examples:\n"
      "  augflow predict --model runs/r1/best.ckpt photos/new/ --views tencrop --top 3 --out predictions.csv\n"
      "  augflow predict --model model.onnx img1.jpg img2.png --json predictions.json\n"
      "  augflow predict --model a/best.ckpt b/best.ckpt --views multiscale todo.txt > labels.csv");
  // Not ->required(): --model may have taken the inputs (split_models_and_inputs puts them back).
  cmd->add_option("inputs", command->inputs,
                  "image files, folders (searched recursively) and list files (.csv, .txt, .lst), in the\n"
                  "order the rows should come out")
      ->expected(1, -1);
  add_test_time_options(*cmd, command->options, command->scales);
  cmd->add_option("--top", command->top, "classes per image, most probable first (at most the number of classes)")
      ->capture_default_str();
  cmd->add_option("--out", command->out,
                  "CSV file to write (replaced when complete); without --out and --json the CSV goes to\n"
                  "standard output");
  cmd->add_option("--json", command->json,
                  "JSON file to write: {\"model\": [...], \"views\": ..., \"classes\": [...], \"images\": N,\n"
                  "\"predictions\": [{\"path\": ..., \"top\": [{\"class\": ..., \"probability\": ...}]} or\n"
                  "{\"path\": ..., \"error\": ...}], \"labelled\": n, \"skipped\": m}");
  cmd->callback([command, cmd] {
    split_models_and_inputs(*cmd, *command);
    run_predict(*command);
  });
}

}  // namespace augflow::apps
