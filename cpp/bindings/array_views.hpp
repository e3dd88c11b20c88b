// numpy -> strided Eigen Maps without copies. Arguments arrive as Refs with
// dynamic strides (pybind11 maps any float64/int32 array onto them); the core
// works on Maps so it never depends on pybind11.
#pragma once

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "multilevel/normal_equations.hpp"
#include "multilevel/types.hpp"

namespace multilevel {
struct LmmSolution;
class LinearMixedModel;
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

/// A std::vector as a new 1-D numpy array (for pickled states).
template <class T>
inline pybind11::array_t<T> to_array(const std::vector<T>& v) {
  pybind11::array_t<T> out(static_cast<pybind11::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

/// A 1-D numpy array (any numeric dtype) as a std::vector<T> (for pickled states).
template <class T>
inline std::vector<T> from_array(const pybind11::handle& h) {
  const auto a = pybind11::array_t<T, pybind11::array::c_style | pybind11::array::forcecast>::ensure(h);
  if (!a || a.ndim() != 1) throw std::invalid_argument("saved state: expected a 1-D array");
  return std::vector<T>(a.data(), a.data() + a.size());
}

/// A pickled matrix into `into`, refused when its shape differs from `into`'s.
inline void load_matrix(const pybind11::handle& h, MatrixXd& into, const char* what) {
  MatrixXd m = h.cast<MatrixXd>();
  if (m.rows() != into.rows() || m.cols() != into.cols())
    throw std::invalid_argument(std::string("saved state: ") + what + " has the wrong shape");
  into = std::move(m);
}

/// The term shapes of a pickled accumulator or core state (slots 4 and 5: columns and levels per term).
inline std::vector<TermShape> saved_shapes(const pybind11::tuple& t) {
  const auto p_k = t[4].cast<std::vector<Index>>(), nlev = t[5].cast<std::vector<Index>>();
  if (p_k.size() != nlev.size()) throw std::invalid_argument("saved state: term shapes differ in length");
  std::vector<TermShape> shapes;
  for (std::size_t k = 0; k < p_k.size(); ++k) shapes.push_back(TermShape{p_k[k], nlev[k]});
  return shapes;
}

/// The blocks an accumulator and finished normal equations share, from their pickled state
/// (slots 1 rows, 3 sum of log weights, 6-9 A00, AX0, AXR, AXX); `blocks` gives the expected shapes.
template <class Blocks>
void load_row_blocks(const pybind11::tuple& t, Blocks& blocks) {
  blocks.n = t[1].cast<Index>();
  blocks.sum_log_weights = t[3].cast<double>();
  load_matrix(t[6], blocks.A00, "A00");
  load_matrix(t[7], blocks.AX0, "AX0");
  load_matrix(t[8], blocks.AXR, "AXR");
  load_matrix(t[9], blocks.AXX, "AXX");
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

/// A linear mixed model's normal equations and storage choice as plain arrays (its pickled state),
/// and the model rebuilt from them, every size and index checked (lmm_bindings.cpp).
pybind11::tuple core_state(const LinearMixedModel& model);
std::unique_ptr<LinearMixedModel> core_from_state(const pybind11::tuple& state);

}  // namespace multilevel::bindings
