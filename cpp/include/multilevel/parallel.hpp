// Optional OpenMP parallelism. Without OpenMP everything runs serially and
// gives the same results; with it, loops are split into work items whose
// arithmetic does not depend on the number of threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#define ML_PRAGMA(x) _Pragma(#x)
#define ML_PARALLEL_FOR_DYNAMIC ML_PRAGMA(omp parallel for schedule(dynamic, 1))
#else
#define ML_PARALLEL_FOR_DYNAMIC
#endif

namespace multilevel {

/// Threads the core may use (1 without OpenMP).
inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Set the number of threads for later calls (ignored without OpenMP).
inline void set_max_threads(int n) {
#ifdef _OPENMP
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
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
