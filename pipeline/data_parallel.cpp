#include "pipeline/data_parallel.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace augflow::pipeline {

std::pair<int, int> chunks_of(int rank, int ranks, int chunks) {
  return {static_cast<int>(static_cast<long>(chunks) * rank / ranks),
          static_cast<int>(static_cast<long>(chunks) * (rank + 1) / ranks)};
}

int max_processes(int batch, int chunks) { return model::ChunkLayout::uniform(batch, chunks).count; }

void CommunicatorExchange::gather_bytes(const void* mine, std::size_t bytes_per_chunk, void* all) {
  std::vector<std::size_t> bytes(static_cast<std::size_t>(comm_.size()));
  for (int r = 0; r < comm_.size(); ++r) {
    const auto [first, last] = chunks_of(r, comm_.size(), chunks_);
    bytes[r] = static_cast<std::size_t>(last - first) * bytes_per_chunk;
  }
  comm_.all_gather_into(mine, bytes, all);
}

void CommunicatorExchange::gather(const float* mine, std::size_t width, float* all) {
  gather_bytes(mine, width * sizeof(float), all);
}

void CommunicatorExchange::gather(const double* mine, std::size_t width, double* all) {
  gather_bytes(mine, width * sizeof(double), all);
}

void CommunicatorExchange::reduce(const float* mine, std::size_t width, const std::vector<std::size_t>& nodes_per_rank,
                                  const std::function<void(const float*, std::size_t, float*)>& combine, float* sums) {
  const int ranks = comm_.size(), me = comm_.rank();
  const auto slice_begin = [&](int r) { return width * static_cast<std::size_t>(r) / static_cast<std::size_t>(ranks); };
  const std::size_t held = nodes_per_rank[me], my_slice = slice_begin(me + 1) - slice_begin(me);
  // To each process, its slice of every partial sum of this one (sum after sum).
  send_.resize(held * width);
  std::vector<std::size_t> send_bytes(ranks), recv_bytes(ranks);
  std::size_t at = 0, received = 0;
  for (int r = 0; r < ranks; ++r) {
    const std::size_t begin = slice_begin(r), length = slice_begin(r + 1) - begin;
    for (std::size_t t = 0; t < held; ++t, at += length)
      std::copy(mine + t * width + begin, mine + t * width + begin + length, send_.data() + at);
    send_bytes[r] = held * length * sizeof(float);
    recv_bytes[r] = nodes_per_rank[r] * my_slice * sizeof(float);
    received += nodes_per_rank[r] * my_slice;
  }
  recv_.resize(received);
  comm_.all_to_all(send_.data(), send_bytes, recv_.data(), recv_bytes);
  slice_.resize(my_slice);
  combine(recv_.data(), my_slice, slice_.data());
  std::vector<std::size_t> slice_bytes(ranks);
  for (int r = 0; r < ranks; ++r) slice_bytes[r] = (slice_begin(r + 1) - slice_begin(r)) * sizeof(float);
  comm_.all_gather_into(slice_.data(), slice_bytes, sums);
}

DataParallel::DataParallel(Communicator& comm, int chunks) : comm_(comm), chunks_(chunks), exchange_(comm) {}

std::pair<std::size_t, std::size_t> DataParallel::share(std::size_t positions) const {
  const auto layout = model::ChunkLayout::uniform(static_cast<int>(positions), chunks_);
  const auto [first, last] = chunks_of(comm_.rank(), comm_.size(), layout.count);
  if (first == last) return {0, 0};
  return {static_cast<std::size_t>(layout.begin(first)), static_cast<std::size_t>(layout.end(last - 1))};
}

std::function<std::pair<std::size_t, std::size_t>(std::size_t)> DataParallel::loader_share() const {
  if (comm_.size() == 1) return {};
  return [this](std::size_t positions) { return share(positions); };
}

model::BatchPartition DataParallel::partition(const Batch* local, std::size_t positions) {
  const auto layout = model::ChunkLayout::uniform(static_cast<int>(positions), chunks_);
  const auto [first, last] = chunks_of(comm_.rank(), comm_.size(), layout.count);
  model::BatchPartition p;
  p.chunks = layout.count;
  p.first = first;
  p.bounds.assign(static_cast<std::size_t>(last - first) + 1, 0);
  if (local != nullptr) {
    // Local samples are in position order: count those of each held chunk.
    std::size_t row = 0;
    const auto where = local->positions();
    for (int c = first; c < last; ++c) {
      while (row < where.size() && static_cast<int>(where[row]) < layout.end(c)) {
        if (static_cast<int>(where[row]) < layout.begin(c))
          throw std::logic_error("data-parallel batch: a sample at position " + std::to_string(where[row]) +
                                 " is outside this process's chunks");
        ++row;
      }
      p.bounds[static_cast<std::size_t>(c - first) + 1] = static_cast<int>(row);
    }
    if (row != where.size()) throw std::logic_error("data-parallel batch: samples beyond this process's chunks");
  }
  // Until agree(): the held chunks' own counts (enough for evaluation, which exchanges nothing).
  p.samples.assign(static_cast<std::size_t>(p.chunks), 0);
  for (int c = first; c < last; ++c) p.samples[c] = p.bounds[c - first + 1] - p.bounds[c - first];
  if (comm_.size() > 1) {
    exchange_.set_chunks(p.chunks);
    p.exchange = &exchange_;
    for (int r = 0; r <= comm_.size(); ++r)
      p.owners.push_back(r < comm_.size() ? chunks_of(r, comm_.size(), p.chunks).first : p.chunks);
  }
  return p;
}

StepAgreement DataParallel::agree(model::BatchPartition& partition, bool stop, double lr, bool last_step) {
  // Each process: stop, lr, last step, then the sample count of each chunk it holds.
  constexpr std::size_t kFixed = 3;
  std::vector<double> mine{stop ? 1.0 : 0.0, lr, last_step ? 1.0 : 0.0};
  for (int c = 0; c < partition.held(); ++c) mine.push_back(partition.bounds[c + 1] - partition.bounds[c]);
  std::vector<std::size_t> bytes(static_cast<std::size_t>(comm_.size()));
  std::size_t total = 0;
  for (int r = 0; r < comm_.size(); ++r) {
    const auto [first, last] = chunks_of(r, comm_.size(), partition.chunks);
    bytes[r] = (kFixed + static_cast<std::size_t>(last - first)) * sizeof(double);
    total += bytes[r];
  }
  std::vector<double> all(total / sizeof(double));
  comm_.all_gather_into(mine.data(), bytes, all.data());
  StepAgreement agreed;
  agreed.lr = all[1];
  agreed.last_step = all[2] != 0.0;
  std::size_t at = 0;
  for (int r = 0; r < comm_.size(); ++r) {
    const auto [first, last] = chunks_of(r, comm_.size(), partition.chunks);
    agreed.stop = agreed.stop || all[at] != 0.0;
    for (int c = first; c < last; ++c) {
      partition.samples[c] = static_cast<int>(all[at + kFixed + (c - first)]);
      agreed.samples += partition.samples[c];
    }
    at += kFixed + static_cast<std::size_t>(last - first);
  }
  return agreed;
}

std::pair<double, std::size_t> DataParallel::batch_sums(const model::BatchPartition& partition,
                                                        const std::vector<double>& sample_losses,
                                                        const std::vector<char>& sample_correct) {
  std::vector<double> mine(static_cast<std::size_t>(partition.held()) * 2, 0.0);
  for (int c = 0; c < partition.held(); ++c)
    for (int i = partition.bounds[c]; i < partition.bounds[c + 1]; ++i) {
      mine[2 * c] += sample_losses[i];
      mine[2 * c + 1] += sample_correct[i] ? 1.0 : 0.0;
    }
  std::vector<double> all = mine;
  if (partition.exchange != nullptr) {
    all.resize(static_cast<std::size_t>(partition.chunks) * 2);
    partition.exchange->gather(mine.data(), 2, all.data());
  }
  double loss = 0.0, correct = 0.0;
  for (int c = 0; c < partition.chunks; ++c) {
    if (partition.samples[c] == 0) continue;
    loss += all[2 * c];
    correct += all[2 * c + 1];
  }
  return {loss, static_cast<std::size_t>(correct)};
}

void DataParallel::share_unusable(Loader& loader) {
  if (comm_.size() == 1) return;
  nlohmann::json mine = nlohmann::json::array();
  for (const auto& [index, entry] : loader.bad_files().entries()) mine.push_back({index, entry.second});
  for (const auto& text : comm_.all_gather(mine.dump()))
    for (const auto& item : nlohmann::json::parse(text)) {
      const auto index = item.at(0).get<std::size_t>();
      if (!loader.bad_files().find(index)) loader.mark_unusable(index, item.at(1).get<std::string>());
    }
}

std::tuple<double, std::size_t, std::size_t> DataParallel::sum_records(const std::vector<ChunkRecord>& mine) {
  std::vector<ChunkRecord> all = mine;
  if (comm_.size() > 1) {
    std::string bytes(mine.size() * sizeof(ChunkRecord), '\0');
    if (!mine.empty()) std::memcpy(bytes.data(), mine.data(), bytes.size());
    all.clear();
    for (const auto& part : comm_.all_gather(bytes)) {
      const std::size_t count = part.size() / sizeof(ChunkRecord);
      const std::size_t at = all.size();
      all.resize(at + count);
      if (count) std::memcpy(all.data() + at, part.data(), count * sizeof(ChunkRecord));
    }
  }
  std::sort(all.begin(), all.end(),
            [](const ChunkRecord& a, const ChunkRecord& b) { return a.batch != b.batch ? a.batch < b.batch : a.chunk < b.chunk; });
  double loss = 0.0, correct = 0.0, samples = 0.0;
  for (const auto& r : all) {
    loss += r.loss;
    correct += r.correct;
    samples += r.samples;
  }
  return {loss, static_cast<std::size_t>(correct), static_cast<std::size_t>(samples)};
}

}  // namespace augflow::pipeline
