// Rows grouped by the level of one factor, by a counting sort (O(n + levels)).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "multilevel/types.hpp"

namespace multilevel {

/// Row numbers sorted by level, stable within a level.
///
/// Rows of level j are `rows[start[j] .. start[j + 1])`.
struct GroupIndex {
  std::vector<Index> start;       // (nlevels + 1,)
  std::vector<std::int32_t> rows;  // (n,)

  /// codes (n,): level of each row, each in [0, nlevels).
  GroupIndex(const CodesMap& codes, Index nlevels) : start(nlevels + 1, 0), rows(codes.size()) {
    const Index n = codes.size();
    for (Index i = 0; i < n; ++i) {
      const std::int32_t g = codes[i];
      if (g < 0 || g >= nlevels) {
        throw std::invalid_argument("level code " + std::to_string(g) + " at row " +
                                    std::to_string(i) + " is outside [0, " +
                                    std::to_string(nlevels) + ")");
      }
      ++start[g + 1];
    }
    for (Index j = 0; j < nlevels; ++j) start[j + 1] += start[j];
    std::vector<Index> next(start.begin(), start.end() - 1);
    for (Index i = 0; i < n; ++i) rows[next[codes[i]]++] = static_cast<std::int32_t>(i);
  }

  Index nlevels() const { return static_cast<Index>(start.size()) - 1; }
};

}  // namespace multilevel
