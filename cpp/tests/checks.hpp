// Pass/fail counting shared by the C++ unit tests.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace multilevel::testing {

inline int passed = 0, failed = 0;

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

inline double rel_diff(double a, double b) { return std::abs(a - b) / std::max(1.0, std::abs(b)); }
inline double max_abs(const Eigen::MatrixXd& m) { return m.size() ? m.cwiseAbs().maxCoeff() : 0.0; }

}  // namespace multilevel::testing
