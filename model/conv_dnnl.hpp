// The fast path of Conv2d: oneDNN's direct convolution (jit kernels for the CPU's vector width,
// on blocked layouts such as nChw16c) run on ONE thread per call, on one chunk of the batch.
//
// Contract: the caller (Conv2d) keeps the fixed chunks of model/parallel.hpp and calls
// forward/backward once per chunk, from any thread, with the chunk index as `slot`. Everything
// a chunk touches (blocked copies of its inputs and outputs, oneDNN's scratchpad, the stream) is
// owned by its slot, and oneDNN runs the chunk on the calling thread only: Debian's oneDNN uses
// OpenMP, whose thread count is a per-thread setting (nthreads-var), so every entry point sets
// it to 1 on the calling thread, TBB worker or not, before oneDNN reads it. The kernels are
// chosen when the primitives are created (serially, in prepare()), from the CPU and the shape
// alone, and a kernel's summation order does not depend on its data or on where it runs: so a
// chunk's results depend on nothing but its data, whatever thread or how many threads run it.
//
// The layer's tensors stay NCHW (and the weights out x C x K x K); the blocked copies are made
// inside the chunk (reorders: a few percent of the convolution's time).
//
// API: internal to augflow::model; not installed.
#pragma once

#include <memory>
#include <span>

namespace augflow::model {

struct ConvGeometry {
  int c, h, w;  // input channels, height, width
  int out, k, s, p;
  int ho, wo;
  bool bias;
};

class DnnlConv {
 public:
  /// True when augflow was built with oneDNN (AUGFLOW_HAVE_DNNL).
  static bool available();

  explicit DnnlConv(const ConvGeometry& g);
  ~DnnlConv();
  DnnlConv(const DnnlConv&) = delete;
  DnnlConv& operator=(const DnnlConv&) = delete;

  /// Serial, before the chunks of a batch run: creates (once per chunk size) the primitives,
  /// the buffers of `slots` chunks, and reorders `weight` (out x C x K x K) into the layout the
  /// kernels read (the forward's, or with `backward` the backward-data kernel's). False when
  /// oneDNN has no kernel for a chunk size (the caller then uses its reference path).
  bool prepare(std::span<const int> chunk_sizes, int slots, const float* weight, bool backward);
  /// y (n x out x Ho x Wo) = conv(x (n x C x H x W)) + bias (nullptr without bias).
  void forward(int slot, int n, const float* x, const float* bias, float* y);
  /// dw (out x C*K*K) = the chunk's weight gradient, db (out; nullptr without bias) its bias
  /// gradient (both assigned, not added); dx the input gradient (nullptr: not computed).
  void backward(int slot, int n, const float* x, const float* dy, float* dw, float* db, float* dx);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace augflow::model
