// Optional OpenMP parallelism. Without OpenMP everything runs serially and
// gives the same results; with it, loops are split into work items whose
// arithmetic does not depend on the number of threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#define ML_PRAGMA(x) _Pragma(#x)
// Every parallel loop sizes its team from the process-wide setting (not the
// calling thread's OpenMP state, which differs between Python threads).
#define ML_PARALLEL_FOR_DYNAMIC ML_PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(::multilevel::max_threads()))
#else
#define ML_PARALLEL_FOR_DYNAMIC
#endif

namespace multilevel {

/// The process-wide thread count; 0 means OpenMP's default (OMP_NUM_THREADS, else all cores).
inline std::atomic<int>& thread_setting() {
  static std::atomic<int> setting{0};
  return setting;
}

/// Threads the core uses (1 without OpenMP).
inline int max_threads() {
#ifdef _OPENMP
  const int n = thread_setting().load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

/// Set the number of threads of every later call, from any thread; 0 restores the default.
inline void set_max_threads(int n) {
  if (n < 0) throw std::invalid_argument("the number of threads must be positive (or 0 for the default), not " +
                                         std::to_string(n));
  thread_setting().store(n, std::memory_order_relaxed);
}

/// Deterministic parallel sum over items 0..n-1.
///
/// Items are grouped into fixed chunks of `chunk` consecutive items (the
/// grouping does not depend on the thread count); each chunk is accumulated
/// serially in item order into its own accumulator, then the chunk
/// accumulators are merged in chunk order. So the floating-point result is
/// the same for any number of threads.
///
/// `make()` returns a fresh accumulator (it may hold scratch space);
/// `add(acc, i)` adds item i; `Acc::merge(const Acc&)` adds another
/// accumulator's sums.
template <class MakeAcc, class AddItem>
auto chunked_sum(Eigen::Index n, Eigen::Index chunk, MakeAcc make, AddItem add) {
  using Acc = decltype(make());
  const Eigen::Index nchunks = n == 0 ? 0 : (n + chunk - 1) / chunk;
  std::vector<Acc> partial;
  partial.reserve(static_cast<std::size_t>(nchunks));
  for (Eigen::Index c = 0; c < nchunks; ++c) partial.push_back(make());
  ML_PARALLEL_FOR_DYNAMIC
  for (Eigen::Index c = 0; c < nchunks; ++c) {
    const Eigen::Index end = std::min(n, (c + 1) * chunk);
    for (Eigen::Index i = c * chunk; i < end; ++i) add(partial[static_cast<std::size_t>(c)], i);
  }
  Acc total = make();
  for (const Acc& p : partial) total.merge(p);
  return total;
}

}  // namespace multilevel
