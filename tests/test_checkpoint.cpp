// The checkpoint file format: bit-identical round trips, and a clean error (never a crash) for
// every kind of damaged file. (Copying a Net in and out is in test_net.cpp.)
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "model/checkpoint.hpp"
#include "tests/fixtures.hpp"

namespace augflow::model {
namespace {

using test::random_tensor;

Checkpoint sample_checkpoint() {
  Checkpoint c;
  c.model_spec = "conv4k3p1-bn-relu-gap-fc3";
  c.input = {0, 1, 8, 8};
  c.classes = 3;
  c.class_names = {"cat", "dog", "hérisson"};
  c.epoch = 7;
  c.step = 1234567890123ll;
  c.seed = 0xFEDCBA9876543210ull;  // above INT64_MAX: must survive JSON
  c.augmentation = "hflip | pad_crop(4,8)";
  c.optimizer = "sgd(lr=0.1,momentum=0.9)";
  c.meta = {{"accuracy", 0.91}, {"argv", {"augflow", "train"}}};
  c.params["0.conv.weight"] = random_tensor({1, 4, 9, 1}, 1);
  c.params["0.conv.bias"] = random_tensor({1, 4, 1, 1}, 2);
  c.params["4.fc.weight"] = random_tensor({1, 3, 4, 1}, 3);
  c.params["empty"] = Tensor({0, 0, 1, 1});
  c.state["1.state0"] = random_tensor({1, 4, 1, 1}, 4);
  c.state["1.state1"] = random_tensor({1, 4, 1, 1}, 5);
  c.optimizer_state["0.conv.weight"] = random_tensor({1, 4, 9, 1}, 6);  // same name, other group
  // Special values must come back bit for bit.
  c.params["4.fc.weight"][0] = -0.0f;
  c.params["4.fc.weight"][1] = std::numeric_limits<float>::infinity();
  c.params["4.fc.weight"][2] = std::numeric_limits<float>::denorm_min();
  return c;
}

using test::expect_same_tensors;

void expect_same(const Checkpoint& a, const Checkpoint& b) {
  EXPECT_EQ(a.model_spec, b.model_spec);
  EXPECT_EQ(a.input.c, b.input.c);
  EXPECT_EQ(a.input.h, b.input.h);
  EXPECT_EQ(a.input.w, b.input.w);
  EXPECT_EQ(a.classes, b.classes);
  EXPECT_EQ(a.class_names, b.class_names);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.augmentation, b.augmentation);
  EXPECT_EQ(a.optimizer, b.optimizer);
  EXPECT_EQ(a.meta, b.meta);
  expect_same_tensors(a.params, b.params);
  expect_same_tensors(a.state, b.state);
  expect_same_tensors(a.optimizer_state, b.optimizer_state);
}

std::vector<char> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// The DataError message of loading `path`; fails the test on success or another error.
std::string data_error_of(const std::filesystem::path& path) {
  try {
    load_checkpoint(path.string());
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), path.string());
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a DataError: " << e.what();
    return {};
  }
  ADD_FAILURE() << "loaded a damaged checkpoint";
  return {};
}

TEST(Checkpoint, RoundTripIsBitIdentical) {
  test::TempDir dir;
  const auto path = dir.path() / "model.ckpt";
  const Checkpoint original = sample_checkpoint();
  save_checkpoint(path.string(), original);
  expect_same(original, load_checkpoint(path.string()));
  // An empty checkpoint is valid too.
  save_checkpoint(path.string(), Checkpoint{});
  expect_same(Checkpoint{}, load_checkpoint(path.string()));
}

TEST(Checkpoint, FileStartsWithMagicAndVersion) {
  test::TempDir dir;
  const auto path = dir.path() / "model.ckpt";
  save_checkpoint(path.string(), sample_checkpoint());
  const auto bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 16u);
  EXPECT_EQ(std::string(bytes.data(), 12), std::string("AUGFLOW\0CKPT", 12));
  EXPECT_EQ(bytes[12], 1);
  EXPECT_EQ(bytes[13], 0);
}

TEST(Checkpoint, TruncatedFilesAreDataErrors) {
  test::TempDir dir;
  const auto good = dir.path() / "good.ckpt";
  save_checkpoint(good.string(), sample_checkpoint());
  const auto bytes = read_bytes(good);
  const auto cut = dir.path() / "cut.ckpt";
  for (std::size_t length : {std::size_t{0}, std::size_t{5}, std::size_t{12}, std::size_t{20}, std::size_t{35},
                             std::size_t{36}, std::size_t{100}, bytes.size() / 2, bytes.size() - 5, bytes.size() - 1}) {
    SCOPED_TRACE(length);
    write_bytes(cut, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length)));
    const std::string message = data_error_of(cut);
    if (length == 0) {
      EXPECT_NE(message.find("not an augflow checkpoint"), std::string::npos) << message;
    } else {
      EXPECT_NE(message.find("truncated"), std::string::npos) << message;
      EXPECT_NE(message.find(std::to_string(length)), std::string::npos) << "names the size found: " << message;
    }
  }
  // The message says how many bytes were expected.
  write_bytes(cut, std::vector<char>(bytes.begin(), bytes.end() - 1));
  EXPECT_NE(data_error_of(cut).find("say " + std::to_string(bytes.size()) + " bytes"), std::string::npos);
}

TEST(Checkpoint, EveryFlippedByteIsADataError) {
  test::TempDir dir;
  Checkpoint small;
  small.model_spec = "fc2";
  small.classes = 2;
  small.input = {0, 3, 1, 1};
  small.params["0.fc.weight"] = random_tensor({1, 2, 3, 1}, 9);
  const auto good = dir.path() / "good.ckpt";
  save_checkpoint(good.string(), small);
  const auto bytes = read_bytes(good);
  const auto bad = dir.path() / "bad.ckpt";
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    // One flip per byte, a low and a high bit alternately.
    const int flip = i % 2 ? 0x80 : 0x01;
    auto damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ flip);
    write_bytes(bad, damaged);
    SCOPED_TRACE("byte " + std::to_string(i) + " xor " + std::to_string(flip));
    EXPECT_FALSE(data_error_of(bad).empty());
  }
  // A flip in the data is reported as corruption.
  auto damaged = bytes;
  damaged[bytes.size() - 6] ^= 0x10;
  write_bytes(bad, damaged);
  EXPECT_NE(data_error_of(bad).find("corrupt"), std::string::npos);
}

TEST(Checkpoint, WrongMagicFutureVersionAndTrailingBytes) {
  test::TempDir dir;
  const auto good = dir.path() / "good.ckpt";
  save_checkpoint(good.string(), sample_checkpoint());
  const auto bytes = read_bytes(good);
  const auto bad = dir.path() / "bad.ckpt";

  write_bytes(bad, {'{', '"', 'a', '"', ':', '1', '}'});
  EXPECT_NE(data_error_of(bad).find("not an augflow checkpoint"), std::string::npos);
  auto other = bytes;
  other[3] = 'X';
  write_bytes(bad, other);
  EXPECT_NE(data_error_of(bad).find("not an augflow checkpoint"), std::string::npos);

  auto future = bytes;
  future[12] = 2;
  write_bytes(bad, future);
  const std::string message = data_error_of(bad);
  EXPECT_NE(message.find("version 2"), std::string::npos) << message;
  EXPECT_NE(message.find("reads version 1"), std::string::npos) << message;

  auto longer = bytes;
  longer.push_back('x');
  write_bytes(bad, longer);
  EXPECT_NE(data_error_of(bad).find("unexpected bytes"), std::string::npos);
}

TEST(Checkpoint, HugeLengthsDoNotAllocate) {
  test::TempDir dir;
  const auto good = dir.path() / "good.ckpt";
  save_checkpoint(good.string(), sample_checkpoint());
  const auto bytes = read_bytes(good);
  const auto bad = dir.path() / "bad.ckpt";
  for (const std::size_t field : {std::size_t{16}, std::size_t{24}}) {
    auto damaged = bytes;
    for (std::size_t i = 0; i < 8; ++i) damaged[field + i] = static_cast<char>(0xFF);
    write_bytes(bad, damaged);
    EXPECT_NE(data_error_of(bad).find("truncated"), std::string::npos);
    damaged[field + 7] = 0x00;
    damaged[field + 4] = 0x19;  // about 100 GB
    write_bytes(bad, damaged);
    EXPECT_NE(data_error_of(bad).find("truncated"), std::string::npos);
  }
}

/// Rewrites a valid file with another header (fixing lengths and checksum), to reach the header
/// checks that a checksum would otherwise hide.
void write_with_header(const std::filesystem::path& path, const std::string& header, const std::vector<char>& data) {
  std::vector<char> bytes(32);
  std::memcpy(bytes.data(), "AUGFLOW\0CKPT", 12);
  const auto put = [&](std::size_t at, std::uint64_t x, int n) {
    for (int i = 0; i < n; ++i) bytes[at + i] = static_cast<char>(x >> (8 * i));
  };
  put(12, 1, 4);
  put(16, header.size(), 8);
  put(24, data.size(), 8);
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  const auto crc = crc32(0L, reinterpret_cast<const Bytef*>(bytes.data() + 12), static_cast<uInt>(bytes.size() - 12));
  bytes.resize(bytes.size() + 4);
  put(bytes.size() - 4, crc, 4);
  write_bytes(path, bytes);
}

TEST(Checkpoint, MalformedHeadersAreDataErrors) {
  test::TempDir dir;
  const auto bad = dir.path() / "bad.ckpt";
  const nlohmann::json valid = {{"model", "fc2"},      {"input", {2, 1, 1}}, {"classes", 2},
                                {"class_names", nlohmann::json::array()}, {"epoch", 0},         {"step", 0},
                                {"seed", 1},           {"augmentation", ""}, {"optimizer", ""},
                                {"meta", nlohmann::json::object()},
                                {"tensors", {{{"name", "w"}, {"group", "params"}, {"shape", {1, 2, 1, 1}}}}}};
  const std::vector<char> eight_bytes(8, 0);
  write_with_header(bad, valid.dump(), eight_bytes);
  EXPECT_EQ(load_checkpoint(bad.string()).params.at("w").size(), 2u);

  const auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json h = valid;
    h[key] = std::move(value);
    return h.dump();
  };
  const nlohmann::json tensor = valid["tensors"][0];
  auto tensor_with = [&](const char* key, nlohmann::json value) {
    nlohmann::json t = tensor;
    t[key] = std::move(value);
    return with("tensors", nlohmann::json::array({t}));
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "malformed"},
      {"[1,2]", "malformed"},
      {with("classes", "two"), "classes"},
      {with("input", {2, 1}), "input"},
      {with("seed", -1), "seed"},
      {with("meta", 3), "meta"},
      {tensor_with("shape", {1, 3, 1, 1}), "larger than the 8 bytes"},
      {tensor_with("shape", {1, 1, 1, 1}), "need 4 bytes"},
      {tensor_with("shape", {65536, 65536, 65536, 65536}), "larger than"},
      {tensor_with("shape", {-1, 2, 1, 1}), "dimension"},
      {tensor_with("group", "grads"), "unknown group"},
      {with("tensors", nlohmann::json::array({tensor, tensor})), "twice"},
  };
  for (const auto& [header, says] : cases) {
    SCOPED_TRACE(header);
    write_with_header(bad, header, eight_bytes);
    const std::string message = data_error_of(bad);
    EXPECT_NE(message.find(says), std::string::npos) << message;
  }
}

TEST(Checkpoint, MissingOrUnreadableFilesAreIoErrors) {
  test::TempDir dir;
  EXPECT_THROW(load_checkpoint((dir.path() / "missing.ckpt").string()), IoError);
  try {
    load_checkpoint((dir.path() / "missing.ckpt").string());
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.ckpt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_checkpoint(dir.path().string()), IoError);
  // Saving into a folder that does not exist fails with the path named, and leaves nothing.
  try {
    save_checkpoint((dir.path() / "no" / "such" / "m.ckpt").string(), sample_checkpoint());
    ADD_FAILURE() << "saved into a missing folder";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("m.ckpt"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, SaveReplacesAtomically) {
  test::TempDir dir;
  const auto path = dir.path() / "model.ckpt";
  Checkpoint first = sample_checkpoint();
  save_checkpoint(path.string(), first);
  Checkpoint second = sample_checkpoint();
  second.epoch = 8;
  second.params["4.fc.weight"] = random_tensor({1, 3, 4, 1}, 42);
  second.params["extra"] = random_tensor({2, 3, 4, 5}, 43);
  save_checkpoint(path.string(), second);
  expect_same(second, load_checkpoint(path.string()));
  // Only the target is left in the folder: no temporary files.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) names.push_back(entry.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"model.ckpt"});

  // A failed save (the target is a non-empty folder, so rename fails) leaves no temp file behind.
  const auto folder = dir.path() / "taken";
  std::filesystem::create_directories(folder / "inside");
  EXPECT_THROW(save_checkpoint(folder.string(), first), IoError);
  names.clear();
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"model.ckpt", "taken"}));
}

}  // namespace
}  // namespace augflow::model
