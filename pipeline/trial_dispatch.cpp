#include "pipeline/trial_dispatch.hpp"

#include <chrono>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace augflow::pipeline {
namespace {

/// How long the main thread sleeps when neither a message nor a finished trial is waiting: a
/// trial takes seconds, so 2 ms of delay costs nothing and keeps the polling thread idle.
constexpr auto kIdle = std::chrono::milliseconds(2);

/// The trials running on this process's threads, and what they left when they ended.
class LocalSlots {
 public:
  explicit LocalSlots(const TrialRunner& run) : run_(run) {}
  ~LocalSlots() { join_all(); }

  int running() const { return running_; }

  void start(std::size_t id, TrialTask task) {
    ++running_;
    threads_.emplace_back([this, id, task = std::move(task)] {
      Ended ended{id, std::nullopt, nullptr};
      try {
        ended.result = run_(task);
      } catch (...) {
        ended.error = std::current_exception();
      }
      std::lock_guard lock(mutex_);
      ended_.push_back(std::move(ended));
    });
  }

  struct Ended {
    std::size_t id;
    std::optional<TrialResult> result;  // nullopt: interrupted
    std::exception_ptr error;
  };
  /// The trials that ended since the last call.
  std::vector<Ended> take_ended() {
    std::vector<Ended> out;
    {
      std::lock_guard lock(mutex_);
      out.assign(std::make_move_iterator(ended_.begin()), std::make_move_iterator(ended_.end()));
      ended_.clear();
    }
    running_ -= static_cast<int>(out.size());
    if (running_ == 0) join_all();
    return out;
  }

 private:
  void join_all() {
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  const TrialRunner& run_;
  int running_ = 0;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::deque<Ended> ended_;
};

nlohmann::json params_to_json(const model::Assignment& params) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : params) list.push_back({p.number, p.text});
  return list;
}

model::Assignment params_from_json(const nlohmann::json& list) {
  model::Assignment params;
  for (const auto& p : list) params.push_back({p.at(0).get<double>(), p.at(1).get<std::string>()});
  return params;
}

}  // namespace

std::string task_to_wire(std::size_t id, const TrialTask& task) {
  return nlohmann::json{{"type", "task"}, {"id", id}, {"stage", task.stage}, {"index", task.index},
                        {"params", params_to_json(task.params)}}
      .dump();
}

TrialTask task_from_wire(const std::string& wire, std::size_t& id) {
  const auto j = nlohmann::json::parse(wire);
  id = j.at("id");
  return {j.at("stage"), j.at("index"), params_from_json(j.at("params"))};
}

std::string result_to_wire(std::size_t id, const std::optional<TrialResult>& r) {
  nlohmann::json j = {{"type", "result"}, {"id", id}, {"interrupted", !r}};
  if (r)
    j["result"] = {{"stage", r->stage}, {"index", r->index}, {"params", params_to_json(r->params)},
                   {"seed", r->seed}, {"epochs", r->epochs}, {"run_dir", r->run_dir}, {"ok", r->ok},
                   {"error", r->error}, {"val_accuracy", r->val_accuracy},
                   {"final_val_accuracy", r->final_val_accuracy}, {"best_epoch", r->best_epoch},
                   {"epochs_run", r->epochs_run}, {"seconds", r->seconds}, {"checkpoint", r->checkpoint}};
  return j.dump();
}

std::optional<TrialResult> result_from_wire(const std::string& wire, std::size_t& id) {
  const auto j = nlohmann::json::parse(wire);
  id = j.at("id");
  if (j.at("interrupted").get<bool>()) return std::nullopt;
  const auto& r = j.at("result");
  TrialResult t;
  t.stage = r.at("stage");
  t.index = r.at("index");
  t.params = params_from_json(r.at("params"));
  t.seed = r.at("seed");
  t.epochs = r.at("epochs");
  t.run_dir = r.at("run_dir");
  t.ok = r.at("ok");
  t.error = r.at("error");
  t.val_accuracy = r.at("val_accuracy");
  t.final_val_accuracy = r.at("final_val_accuracy");
  t.best_epoch = r.at("best_epoch");
  t.epochs_run = r.at("epochs_run");
  t.seconds = r.at("seconds");
  t.checkpoint = r.at("checkpoint");
  return t;
}

TrialDispatcher::TrialDispatcher(Communicator& comm, int slots, TrialRunner run, const std::atomic<bool>* stop)
    : comm_(comm), slots_(std::max(1, slots)), run_(std::move(run)), stop_(stop) {}

bool TrialDispatcher::run(const std::vector<TrialTask>& tasks,
                          const std::function<void(std::size_t, TrialResult&&)>& finished) {
  LocalSlots local(run_);
  std::size_t next = 0;
  int remote_running = 0;
  bool stopping = false, interrupted = false;
  std::exception_ptr error;
  auto record = [&](std::size_t id, std::optional<TrialResult>&& result) {
    if (!result) {
      interrupted = stopping = true;
      return;
    }
    try {
      finished(id, std::move(*result));
    } catch (...) {
      if (!error) error = std::current_exception();
      stopping = true;
    }
  };
  for (;;) {
    if (stop_ && stop_->load()) interrupted = stopping = true;
    // Hand out in task order, to a free local slot first (no message needed), then to the
    // process that has waited longest.
    while (!stopping && next < tasks.size()) {
      if (local.running() < slots_) {
        local.start(next, tasks[next]);
      } else if (!idle_.empty()) {
        comm_.send(idle_.front(), task_to_wire(next, tasks[next]));
        idle_.erase(idle_.begin());
        ++remote_running;
      } else {
        break;
      }
      ++next;
    }
    bool busy = false;
    for (auto& ended : local.take_ended()) {
      busy = true;
      if (ended.error) {
        if (!error) error = ended.error;
        stopping = true;
      } else {
        record(ended.id, std::move(ended.result));
      }
    }
    while (auto message = comm_.poll()) {
      busy = true;
      const auto& [from, bytes] = *message;
      const auto type = nlohmann::json::parse(bytes).at("type").get<std::string>();
      if (type == "ready") {
        idle_.push_back(from);
      } else if (type == "result") {
        --remote_running;
        std::size_t id = 0;
        auto result = result_from_wire(bytes, id);
        record(id, std::move(result));
      }
    }
    if ((next == tasks.size() || stopping) && local.running() == 0 && remote_running == 0) break;
    if (!busy) std::this_thread::sleep_for(kIdle);
  }
  if (error) std::rethrow_exception(error);
  return !interrupted;
}

void TrialDispatcher::finish() {
  if (comm_.size() == 1) return;
  for (int r = 1; r < comm_.size(); ++r) comm_.send(r, R"({"type":"done"})");
  // Every process has stopped sending once it has seen "done": after this collective the
  // "ready" messages still on their way are drained, so none is left unreceived at the end.
  comm_.all_gather("");
  while (comm_.poll()) {
  }
}

bool TrialDispatcher::serve() {
  LocalSlots local(run_);
  bool done = false, interrupted = false;
  std::exception_ptr error;
  const std::string ready = R"({"type":"ready"})";
  for (int s = 0; s < slots_; ++s) comm_.send(0, ready);
  for (;;) {
    bool busy = false;
    while (auto message = comm_.poll()) {
      busy = true;
      const std::string& bytes = message->second;
      const auto type = nlohmann::json::parse(bytes).at("type").get<std::string>();
      if (type == "done") {
        done = true;
      } else if (type == "task") {
        std::size_t id = 0;
        TrialTask task = task_from_wire(bytes, id);
        local.start(id, std::move(task));
      }
    }
    for (auto& ended : local.take_ended()) {
      busy = true;
      if (ended.error) {
        if (!error) error = ended.error;
        continue;
      }
      if (!ended.result) interrupted = true;
      comm_.send(0, result_to_wire(ended.id, ended.result));
      if (!error && !done) comm_.send(0, ready);
    }
    // An error here ends this process once its other trials ended (main aborts the job).
    if (error && local.running() == 0) std::rethrow_exception(error);
    if (done && local.running() == 0) break;
    if (!busy) std::this_thread::sleep_for(kIdle);
  }
  comm_.all_gather("");  // finish()'s collective
  return !interrupted;
}

}  // namespace augflow::pipeline
