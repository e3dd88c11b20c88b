// Rows grouped by the level of one factor, by a counting sort (O(n + levels)): the one
// CSR layout of groups in the core. The LMM normal equations walk a factor's rows with it,
// and Python's cluster layouts (clusters.py, for GEE and GLS) are built by it
// (_core.group_index), whose (ptr, order) ClusterLayout (cluster_sums.hpp) then views.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "multilevel/types.hpp"

namespace multilevel {

/// Row numbers sorted by level, stable within a level.
///
/// Rows of level j are `order[ptr[j] .. ptr[j + 1])`.
struct GroupIndex {
  std::vector<std::int64_t> ptr;    // (nlevels + 1,)
  std::vector<std::int32_t> order;  // (n,)

  /// codes (n,): level of each row, each in [0, nlevels).
  GroupIndex(const CodesMap& codes, Index nlevels) : ptr(nlevels + 1, 0), order(codes.size()) {
    const Index n = codes.size();
    for (Index i = 0; i < n; ++i) {
      const std::int32_t g = codes[i];
      if (g < 0 || g >= nlevels) {
        throw std::invalid_argument("level code " + std::to_string(g) + " at row " +
                                    std::to_string(i) + " is outside [0, " +
                                    std::to_string(nlevels) + ")");
      }
      ++ptr[g + 1];
    }
    for (Index j = 0; j < nlevels; ++j) ptr[j + 1] += ptr[j];
    std::vector<std::int64_t> next(ptr.begin(), ptr.end() - 1);
    for (Index i = 0; i < n; ++i) order[next[codes[i]]++] = static_cast<std::int32_t>(i);
  }

  Index nlevels() const { return static_cast<Index>(ptr.size()) - 1; }
};

}  // namespace multilevel
