// Optional OpenMP parallelism. Without OpenMP everything runs serially and
// gives the same results; with it, loops are split into work items whose
// arithmetic does not depend on the number of threads.
#pragma once

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

}  // namespace multilevel
