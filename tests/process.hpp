// Running the built `augflow` binary (AUGFLOW_BINARY, set by CMake) as a child process from a
// test: start it with extra environment variables and its output in a log file, kill it, and
// collect its exit and its peak memory (getrusage of the child, through wait4).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace augflow::test {

struct ChildExit {
  bool exited = false;   ///< ended by itself (then `status` is its exit status)
  int status = -1;
  int signal = 0;        ///< the signal that ended it, if any
  long max_rss_kb = 0;   ///< peak resident memory (ru_maxrss)
};

/// Starts AUGFLOW_BINARY with `args`, `env` ("NAME=value") added to this process's
/// environment, stdout and stderr appended to `log`. Everything is prepared before fork, so
/// the child only calls async-signal-safe functions before exec (this process has threads).
inline pid_t start_augflow(const std::vector<std::string>& args, const std::filesystem::path& log,
                           const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv_text{AUGFLOW_BINARY};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_text(env);
  for (char** e = environ; *e; ++e) env_text.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (fd >= 0) ::close(fd);
  return pid;
}

inline ChildExit wait_child(pid_t pid) {
  ChildExit result;
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) != pid) return result;
  result.max_rss_kb = usage.ru_maxrss;
  if (WIFEXITED(status)) {
    result.exited = true;
    result.status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

/// Runs augflow to the end.
inline ChildExit run_augflow(const std::vector<std::string>& args, const std::filesystem::path& log,
                             const std::vector<std::string>& env = {}) {
  return wait_child(start_augflow(args, log, env));
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// True when this test binary runs under a sanitizer (memory figures are then inflated).
inline constexpr bool kSanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

}  // namespace augflow::test
