// Seconds and floating-point operations of the convolution and fully-connected kernels, for
// `augflow bench train` (GFLOP/s and fraction of peak per layer kind).
//
// Contract: a profile is attached between steps by the thread that runs the network, and only
// that thread adds to it (Conv2d and Dense time their whole forward or backward call, parallel
// chunks included, around it). With none attached a timer reads no clock. The FLOPs counted
// are the ones computed: 2 per multiply-add of each GEMM or convolution, the input gradient
// only when the layer computes it. CPU time is kept beside wall time because the machines are
// shared: other processes stretch the wall time of a kernel, not the CPU time it used.
#pragma once

#include <chrono>
#include <ctime>

namespace augflow::model {

struct KernelStats {
  double seconds = 0.0;      ///< wall clock
  double cpu_seconds = 0.0;  ///< CPU time of the whole process (all its threads) meanwhile
  double flops = 0.0;
};

struct KernelProfile {
  KernelStats conv_forward, conv_backward, fc_forward, fc_backward;
};

/// The attached profile (nullptr: none).
KernelProfile* kernel_profile();
/// Attaches `profile` (nullptr detaches); the caller owns it.
void attach_kernel_profile(KernelProfile* profile);

/// Adds the time from construction to destruction and `flops` to one KernelStats of the
/// attached profile, if any.
class KernelTimer {
 public:
  KernelTimer(KernelStats KernelProfile::*which, double flops) : profile_(kernel_profile()) {
    if (!profile_) return;
    which_ = which;
    flops_ = flops;
    start_ = std::chrono::steady_clock::now();
    cpu_start_ = cpu_now();
  }
  ~KernelTimer() {
    if (!profile_) return;
    KernelStats& s = profile_->*which_;
    s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    s.cpu_seconds += cpu_now() - cpu_start_;
    s.flops += flops_;
  }
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

 private:
  KernelProfile* profile_;
  KernelStats KernelProfile::*which_ = nullptr;
  double flops_ = 0.0;
  std::chrono::steady_clock::time_point start_;
  double cpu_start_ = 0.0;

  static double cpu_now() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
};

}  // namespace augflow::model
