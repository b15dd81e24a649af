// augflow predict: inputs in order (files, folders, list files), top-K rows that agree with
// eval, unreadable files as rows with reasons, the exit status, JSON and CSV outputs, ensembles.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "pipeline/evaluator.hpp"
#include "pipeline/predictor.hpp"
#include "tests/fixtures.hpp"
#include "tests/model_fixtures.hpp"
#include "tests/process.hpp"

namespace augflow::pipeline {
namespace {

namespace fs = std::filesystem;

/// A red or blue image like write_colour_folder's, `seed` varying its noise.
std::vector<std::uint8_t> colour_png(bool blue, int seed) {
  cv::Mat image = test::noise_image(38, 35, 3, 1000 + seed);
  image *= 0.3;
  image += blue ? cv::Scalar(170, 0, 0) : cv::Scalar(0, 0, 170);
  return test::encode(image, ".png");
}

/// The fields of one CSV line (RFC 4180 quoting).
std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted && ch == '"' && i + 1 < line.size() && line[i + 1] == '"') fields.back() += line[++i];
    else if (ch == '"') quoted = !quoted;
    else if (ch == ',' && !quoted) fields.emplace_back();
    else fields.back() += ch;
  }
  return fields;
}

std::vector<std::vector<std::string>> read_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) rows.push_back(split(line));
  return rows;
}

using test::read_json;

/// Runs augflow with stderr discarded: what it writes to standard output, and its exit status.
std::string stdout_of(const std::string& args, int& status) {
  const std::string command = std::string(AUGFLOW_BINARY) + " " + args + " 2>/dev/null";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string out;
  char buffer[4096];
  while (pipe && std::fgets(buffer, sizeof buffer, pipe)) out += buffer;
  const int raw = pipe ? ::pclose(pipe) : -1;
  status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return out;
}

/// One trained model shared by the tests of this file (training takes about a second).
class PredictTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir;
    model_ = test::train_colour_model(*dir_, 1);
    second_ = test::train_colour_model(*dir_, 2);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static const test::TempDir& dir() { return *dir_; }
  static test::TempDir* dir_;
  static std::string model_, second_;
};
test::TempDir* PredictTest::dir_ = nullptr;
std::string PredictTest::model_, PredictTest::second_;

TEST_F(PredictTest, InputsAreFilesFoldersAndListsInTheOrderGiven) {
  test::TempDir in;
  const auto single = in.write("single.png", colour_png(true, 1));
  in.write("folder/b/z.png", colour_png(false, 2));
  in.write("folder/a.jpg", colour_png(true, 3));
  in.write("folder/.hidden.png", colour_png(true, 4));
  in.write("folder/notes.txt", {'x'});
  in.write("listed/one.png", colour_png(false, 5));
  in.write("listed/two.png", colour_png(true, 6));
  std::ofstream(in.path() / "todo.txt") << "path\n# a comment\n\nlisted/two.png,red\nlisted/one.png\n";
  const Dataset data = open_unlabelled({single.string(), (in.path() / "folder").string(), (in.path() / "todo.txt").string()});
  const std::vector<fs::path> expected{single, in.path() / "folder/a.jpg", in.path() / "folder/b/z.png",
                                       in.path() / "listed/two.png", in.path() / "listed/one.png"};
  EXPECT_EQ(data.paths, expected) << "files, then the folder sorted by path (hidden and non-images skipped), then the list";
  EXPECT_EQ(data.labels.size(), expected.size());

  test::expect_throws_with([&] { open_unlabelled({(in.path() / "typo.png").string()}); }, "typo.png: no such file");
  EXPECT_THROW(open_unlabelled({(in.path() / "typo.png").string()}), ConfigError);
  std::ofstream(in.path() / "empty.txt") << "# nothing\n";
  test::expect_throws_with([&] { open_unlabelled({(in.path() / "empty.txt").string()}); }, "no images");
}

TEST_F(PredictTest, RowsComeInInputOrderWithTheRightColours) {
  test::TempDir in;
  const auto first = in.write("first.png", colour_png(true, 1));
  in.write("folder/a.png", colour_png(false, 2));
  in.write("folder/b.png", colour_png(true, 3));
  in.write("listed/c.png", colour_png(false, 4));
  std::ofstream(in.path() / "list.csv") << "listed/c.png,ignored\n";
  const auto out = in.path() / "predictions.csv";
  const auto r = test::run("predict --model " + model_ + " " + first.string() + " " + (in.path() / "folder").string() +
                           " " + (in.path() / "list.csv").string() + " --batch 2 --top 1 --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto rows = read_csv(test::read_text(out));
  ASSERT_EQ(rows.size(), 5u) << test::read_text(out);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"path", "class1", "probability1", "status"}));
  const std::vector<std::pair<fs::path, std::string>> expected{{first, "blue"},
                                                               {in.path() / "folder/a.png", "red"},
                                                               {in.path() / "folder/b.png", "blue"},
                                                               {in.path() / "listed/c.png", "red"}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(rows[i + 1].size(), 4u);
    EXPECT_EQ(rows[i + 1][0], expected[i].first.string());
    EXPECT_EQ(rows[i + 1][1], expected[i].second) << rows[i + 1][0];
    EXPECT_GT(std::stod(rows[i + 1][2]), 0.5);
    EXPECT_EQ(rows[i + 1][3], "ok");
  }
  EXPECT_NE(r.output.find("labelled 4 of 4 images"), std::string::npos) << r.output;
}

TEST_F(PredictTest, TopKIsSortedAndAgreesWithEval) {
  // The training folder itself: eval's NLL and top-1 over it must follow from predict's
  // probabilities for the same images and views.
  const auto data = (dir().path() / "data").string();
  const auto json = dir().path() / "tencrop.json";
  const auto r = test::run("predict --model " + model_ + " " + data + " --views tencrop --top 9 --json " + json.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto report = read_json(json);
  const auto e = test::run("eval --data " + data + " --model " + model_ + " --views tencrop --json " +
                           (dir().path() / "eval.json").string());
  ASSERT_EQ(e.status, 0) << e.output;
  const auto eval = read_json(dir().path() / "eval.json");
  ASSERT_EQ(report["predictions"].size(), eval["images"].get<std::size_t>());
  EXPECT_EQ(report["views"], eval["views"]);
  double nll = 0, top1 = 0;
  for (const auto& p : report["predictions"]) {
    const auto& top = p["top"];
    ASSERT_EQ(top.size(), 2u) << "--top is capped at the number of classes";
    double sum = 0;
    for (std::size_t k = 0; k < top.size(); ++k) {
      sum += top[k]["probability"].get<double>();
      if (k > 0) {
        EXPECT_GE(top[k - 1]["probability"].get<double>(), top[k]["probability"].get<double>());
      }
    }
    EXPECT_LE(sum, 1 + 1e-5);
    const std::string path = p["path"];
    const std::string truth = path.find("/blue/") != std::string::npos ? "blue" : "red";
    for (const auto& t : top)
      if (t["class"] == truth) nll -= std::log(std::max(t["probability"].get<double>(), 1e-12));
    top1 += top[0]["class"] == truth;
  }
  const double n = static_cast<double>(report["predictions"].size());
  EXPECT_NEAR(nll / n, eval["nll"].get<double>(), 1e-5) << "predict and eval see the same probabilities";
  EXPECT_NEAR(top1 / n, eval["top1"].get<double>(), 1e-12);
}

TEST_F(PredictTest, UnreadableFilesGetRowsWithReasonsAndTheRestAreLabelled) {
  test::TempDir in;
  in.write("images/a.png", colour_png(true, 1));
  const auto corrupt = in.write("images/b.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 'n', 'o', 't', ' ', 'a', ' ', 'j', 'p', 'e', 'g'});
  const auto gif = in.write("images/c.gif", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0});
  in.write("images/d.png", colour_png(false, 2));
  std::ofstream(in.path() / "list.txt") << "images/gone.png\nimages/d.png\n";
  const auto out = in.path() / "p.csv";
  const auto json = in.path() / "p.json";
  const auto r = test::run("predict --model " + model_ + " " + (in.path() / "images").string() + " " +
                           (in.path() / "list.txt").string() + " --out " + out.string() + " --json " + json.string());
  EXPECT_EQ(r.status, 0) << "some images were labelled\n" << r.output;
  const auto rows = read_csv(test::read_text(out));
  ASSERT_EQ(rows.size(), 7u) << test::read_text(out);
  const std::vector<std::string> status{"ok", "", "", "ok", "", "ok"};
  for (std::size_t i = 0; i < status.size(); ++i) {
    const std::string& s = rows[i + 1].back();
    if (status[i] == "ok") {
      EXPECT_EQ(s, "ok") << rows[i + 1][0];
      EXPECT_FALSE(rows[i + 1][1].empty());
    } else {
      EXPECT_NE(s, "ok") << rows[i + 1][0];
      EXPECT_TRUE(rows[i + 1][1].empty()) << "no classes for an unreadable image";
    }
  }
  EXPECT_EQ(rows[2][0], corrupt.string());
  EXPECT_EQ(rows[3][0], gif.string());
  EXPECT_NE(rows[3].back().find("GIF"), std::string::npos) << rows[3].back();
  EXPECT_EQ(rows[5][0], (in.path() / "images/gone.png").string());
  EXPECT_NE(rows[5].back().find("No such file"), std::string::npos) << rows[5].back();
  EXPECT_NE(r.output.find("3 of 6 images could not be read"), std::string::npos) << r.output;

  const auto report = read_json(json);
  EXPECT_EQ(report["images"], 6);
  EXPECT_EQ(report["labelled"], 3);
  EXPECT_EQ(report["skipped"], 3);
  ASSERT_EQ(report["predictions"].size(), 6u);
  EXPECT_TRUE(report["predictions"][1].contains("error"));
  EXPECT_FALSE(report["predictions"][1].contains("top"));
  EXPECT_EQ(report["predictions"][4]["path"], (in.path() / "images/gone.png").string());
}

TEST_F(PredictTest, ExitStatusZeroWhenSomethingWasLabelledOneWhenNothingTwoForAMissingArgument) {
  test::TempDir in;
  const auto bad = in.write("bad.png", {'n', 'o', 'p', 'e'});
  const auto good = in.write("good.png", colour_png(true, 1));
  EXPECT_EQ(test::run("predict --model " + model_ + " " + bad.string() + " " + good.string()).status, 0);
  const auto none = test::run("predict --model " + model_ + " " + bad.string() + " --out " + (in.path() / "x.csv").string());
  EXPECT_EQ(none.status, 1) << none.output;
  EXPECT_NE(none.output.find(bad.string() + ": the image could not be read"), std::string::npos) << none.output;
  EXPECT_TRUE(fs::exists(in.path() / "x.csv")) << "the rows with reasons are still written";
  const auto missing = test::run("predict --model " + model_ + " " + good.string() + " " + (in.path() / "typo.jpg").string());
  EXPECT_EQ(missing.status, 2) << missing.output;
  EXPECT_NE(missing.output.find("typo.jpg: no such file"), std::string::npos) << missing.output;
  const auto no_model = test::run("predict --model " + (in.path() / "none.ckpt").string() + " " + good.string());
  EXPECT_EQ(no_model.status, 1) << no_model.output;
  EXPECT_NE(no_model.output.find("none.ckpt"), std::string::npos) << no_model.output;
}

TEST_F(PredictTest, JsonHasTheDocumentedKeys) {
  test::TempDir in;
  const auto a = in.write("a.png", colour_png(true, 1));
  const auto json = in.path() / "p.json";
  const auto r = test::run("predict --model " + model_ + " " + a.string() + " --top 1 --json " + json.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto report = read_json(json);
  for (const char* key : {"model", "views", "classes", "images", "labelled", "skipped", "predictions"})
    EXPECT_TRUE(report.contains(key)) << key;
  EXPECT_EQ(report["model"], nlohmann::json::array({model_}));
  EXPECT_EQ(report["classes"], nlohmann::json::array({"blue", "red"}));
  // The model was trained with hflip: the default views are the centre and its mirror.
  EXPECT_EQ(report["views"], "flip(resize=32,size=32) | normalize(preset=none)");
  const auto& p = report["predictions"].at(0);
  EXPECT_EQ(p["path"], a.string());
  ASSERT_EQ(p["top"].size(), 1u);
  EXPECT_EQ(p["top"][0]["class"], "blue");
  EXPECT_GT(p["top"][0]["probability"].get<double>(), 0.5);
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(in.path())) files += entry.path() != a && entry.path() != json;
  EXPECT_EQ(files, 0u) << "no temporary file is left behind";
}

TEST_F(PredictTest, CsvGoesToStandardOutputWithoutOut) {
  test::TempDir in;
  const auto a = in.write("a.png", colour_png(false, 1));
  int status = -1;
  const std::string out = stdout_of("predict --model " + model_ + " " + a.string(), status);
  ASSERT_EQ(status, 0);
  const auto rows = read_csv(out);
  ASSERT_EQ(rows.size(), 2u) << "header and one row, nothing else on stdout:\n" << out;
  EXPECT_EQ(rows[0], (std::vector<std::string>{"path", "class1", "probability1", "class2", "probability2", "status"}))
      << "--top 5 is capped at the 2 classes";
  EXPECT_EQ(rows[1][0], a.string());
  EXPECT_EQ(rows[1][1], "red");
}

TEST_F(PredictTest, AnEnsembleAveragesItsMembersProbabilities) {
  test::TempDir in;
  in.write("x/a.png", colour_png(true, 1));
  in.write("x/b.png", colour_png(false, 2));
  const Dataset data = open_unlabelled({(in.path() / "x").string()});
  auto probs_of = [&](const std::vector<std::string>& members, std::vector<std::vector<float>>* each = nullptr) {
    TestTimeOptions o;
    o.members = members;
    o.views = "tencrop";
    Predictor predictor(o);
    predictor.open(data, {});
    std::vector<std::vector<float>> rows;
    predictor.score(0, [&](const ImageScores& s) {
      EXPECT_TRUE(s.ok()) << s.error;
      rows.emplace_back(s.probs.begin(), s.probs.end());
      if (each) {
        EXPECT_EQ(s.member_probs.size(), members.size());
        for (const auto& m : s.member_probs) each->emplace_back(m.begin(), m.end());
      }
    });
    return rows;
  };
  const auto a = probs_of({model_});
  const auto b = probs_of({second_});
  const auto both = probs_of({model_, second_});
  ASSERT_EQ(both.size(), 2u);
  for (std::size_t i = 0; i < both.size(); ++i)
    for (std::size_t k = 0; k < both[i].size(); ++k) EXPECT_NEAR(both[i][k], (a[i][k] + b[i][k]) / 2, 1e-6);
  EXPECT_NE(a, b) << "two seeds give two different models";

  const auto csv = test::run("predict --model " + model_ + " " + second_ + " " + (in.path() / "x").string());
  EXPECT_EQ(csv.status, 0) << csv.output;

  // Members trained on other classes: a clear error naming both files.
  const auto other = test::write_checkpoint(in, "three.ckpt", "fc3", 32, 3, "pad_crop(0,32) | normalize(none)");
  TestTimeOptions o;
  o.members = {model_, other};
  test::expect_throws_with([&] { Predictor p(o); }, "three.ckpt: its 3 classes (class0, class1, class2) differ from the 2");
}

TEST(PredictTopClasses, MostProbableFirstTiesByClassIdAtMostK) {
  const std::vector<float> p{0.1f, 0.4f, 0.1f, 0.4f};
  EXPECT_EQ(top_classes(p, 3), (std::vector<int>{1, 3, 0}));
  EXPECT_EQ(top_classes(p, 9), (std::vector<int>{1, 3, 0, 2}));
  EXPECT_TRUE(top_classes(p, 0).empty());
}

TEST(PredictLists, LabelsAreOptionalAndQuotedPathsMayHoldCommas) {
  test::TempDir in;
  std::ofstream(in.path() / "l.csv") << "\"a,b.png\"\nc.png,cat\n\"d,e.png\",dog\n";
  const auto lines = read_list_lines(in.path() / "l.csv", false);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].path, in.path() / "a,b.png");
  EXPECT_EQ(lines[0].label, "");
  EXPECT_EQ(lines[1].label, "cat");
  EXPECT_EQ(lines[2].path, in.path() / "d,e.png");
  test::expect_throws_with([&] { read_list_lines(in.path() / "l.csv", true); }, "line 1: expected `path,label`");
}

}  // namespace
}  // namespace augflow::pipeline
