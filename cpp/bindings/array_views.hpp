// numpy -> strided Eigen Maps without copies. Arguments arrive as Refs with
// dynamic strides (pybind11 maps any float64/int32 array onto them); the core
// works on Maps so it never depends on pybind11.
#pragma once

#include <pybind11/eigen.h>

#include <stdexcept>
#include <vector>

#include "multilevel/normal_equations.hpp"
#include "multilevel/types.hpp"

namespace multilevel {
struct LmmSolution;
}

namespace multilevel::bindings {

using MatrixArg = Eigen::Ref<const Eigen::MatrixXd, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
using VectorArg = Eigen::Ref<const Eigen::VectorXd, 0, Eigen::InnerStride<Eigen::Dynamic>>;
using CodesArg = Eigen::Ref<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>, 0,
                            Eigen::InnerStride<Eigen::Dynamic>>;

inline StridedMatrixMap as_map(const MatrixArg& m) {
  return StridedMatrixMap(m.data(), m.rows(), m.cols(),
                          Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(m.outerStride(), m.innerStride()));
}
inline StridedVectorMap as_map(const VectorArg& v) {
  return StridedVectorMap(v.data(), v.size(), Eigen::InnerStride<Eigen::Dynamic>(v.innerStride()));
}
inline CodesMap as_map(const CodesArg& v) {
  return CodesMap(v.data(), v.size(), Eigen::InnerStride<Eigen::Dynamic>(v.innerStride()));
}

/// One TermInput per random-effects term from the bound arrays (codes (n,), z (n, p_k)).
inline std::vector<TermInput> term_inputs(const std::vector<CodesArg>& codes, const std::vector<MatrixArg>& z,
                                          const std::vector<Index>& nlevels) {
  if (codes.size() != z.size() || codes.size() != nlevels.size())
    throw std::invalid_argument("codes, z and nlevels must have one entry per term");
  std::vector<TermInput> terms;
  for (std::size_t k = 0; k < codes.size(); ++k) terms.push_back(TermInput{as_map(codes[k]), as_map(z[k]), nlevels[k]});
  return terms;
}

/// A linear mixed model's solution as a Python dict (defined in lmm_bindings.cpp).
pybind11::dict solution_dict(const LmmSolution& sol);

}  // namespace multilevel::bindings
