// The fast path of Dense: oneDNN's matmul (jit GEMM kernels for the CPU's vector width), run on
// ONE thread per call, like the convolutions' (see model/conv_dnnl.hpp for why that keeps
// results independent of the thread count: a call's kernel and its summation order depend only
// on the CPU and the shapes, never on the thread that runs it).
//
// API: internal to augflow::model; not installed.
#pragma once

#include <cstdint>

namespace augflow::model {

/// A matrix operand: element (i, j) at data[i * row_stride + j * col_stride].
struct MatrixRef {
  const float* data;
  std::int64_t rows, cols, row_stride, col_stride;
};

/// True when augflow was built with oneDNN (AUGFLOW_HAVE_DNNL).
bool dnnl_matmul_available();

/// C = A B (+ C when `accumulate`) (+ `bias`, one value per column of C, when not nullptr), with
/// C row-major (m x n, rows `ldc` apart). Single-threaded on the calling thread; thread-safe.
/// The primitive for each distinct shape is created once and kept.
void dnnl_matmul(const MatrixRef& a, const MatrixRef& b, float* c, std::int64_t ldc, bool accumulate,
                 const float* bias);

}  // namespace augflow::model
