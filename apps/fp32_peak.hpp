// The machine's FP32 peak, for `augflow bench train`'s fraction of peak.
//
// Nominal peak = threads x FMA lanes per cycle x 2 FLOP x clock. Lanes per cycle come from the
// vector width the build uses (-march=native: 16 floats with AVX-512, 8 with AVX2) times the FMA
// pipes (2 on the x86 server cores of today), halved on AMD Zen 4 (family 19h), which executes
// a 512-bit FMA as two 256-bit halves; Zen 5 (family 1Ah) has full-width 512-bit pipes. A VM
// does not show the clock, so it is measured: a loop of independent FMAs on each thread (12
// accumulators, enough to hide a 4-cycle latency on 2 pipes) runs at the peak, and its rate per
// CPU second (not wall second: on a shared machine other processes take turns on the cores)
// divided by the nominal FLOP per cycle gives the clock it ran at.
#pragma once

namespace augflow::apps {

struct Fp32Peak {
  int threads = 1;
  int lanes = 1;           ///< floats per FMA instruction the build uses
  int flop_per_cycle = 2;  ///< per core: lanes per cycle x 2 (multiply and add)
  double gflops = 0.0;     ///< the FMA loop's rate per CPU second, summed over `threads` threads
  double ghz() const { return gflops / (static_cast<double>(flop_per_cycle) * threads); }
};

/// Runs the FMA loop on `threads` threads at once (about half a second in all).
Fp32Peak measure_fp32_peak(int threads);

}  // namespace augflow::apps
