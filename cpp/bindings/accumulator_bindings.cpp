// Python binding of the normal-equations accumulator: add rows chunk by
// chunk, merge partial sums, pickle them (Dask ships them between processes).
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "array_views.hpp"
#include "multilevel/normal_equations.hpp"

namespace py = pybind11;
using namespace multilevel;
using namespace multilevel::bindings;

namespace {

constexpr int kStateVersion = 1;

py::tuple get_state(const NormalEquationsAccumulator& a) {
  std::vector<Index> p_k, nlev;
  for (const TermShape& s : a.shapes) {
    p_k.push_back(s.p);
    nlev.push_back(s.nlevels);
  }
  py::list pairs;
  for (const LevelPairSums& s : a.pairs)
    pairs.append(py::make_tuple(to_array(s.col_start), to_array(s.row_level), to_array(s.values)));
  py::list rest;
  for (const MatrixXd& m : a.rest_diag) rest.append(m);
  return py::make_tuple(kStateVersion, a.n, a.p, a.sum_log_weights, p_k, nlev, a.A00, a.AX0, a.AXR, a.AXX,
                        rest, pairs);
}

// Rebuilds an accumulator from get_state's tuple, checking every size so a
// damaged state is an error, never an out-of-bounds read later.
NormalEquationsAccumulator set_state(const py::tuple& t) {
  if (t.size() != 12 || t[0].cast<int>() != kStateVersion)
    throw std::invalid_argument("not a NormalEquationsAccumulator state of this version");
  NormalEquationsAccumulator a(t[2].cast<Index>(), saved_shapes(t));
  load_row_blocks(t, a);
  const auto rest = t[10].cast<py::list>();
  if (rest.size() != a.rest_diag.size()) throw std::invalid_argument("accumulator state: wrong number of rest blocks");
  for (std::size_t k = 1; k < a.rest_diag.size(); ++k) load_matrix(rest[k], a.rest_diag[k], "a rest block");
  const auto pairs = t[11].cast<py::list>();
  if (pairs.size() != a.pairs.size()) throw std::invalid_argument("accumulator state: wrong number of level pairs");
  for (std::size_t e = 0; e < a.pairs.size(); ++e) {
    const auto item = pairs[e].cast<py::tuple>();
    LevelPairSums& s = a.pairs[e];
    auto col_start = from_array<Index>(item[0]);
    auto row_level = from_array<std::int32_t>(item[1]);
    auto values = from_array<double>(item[2]);
    const Index npairs = static_cast<Index>(row_level.size());
    bool ok = col_start.size() == s.col_start.size() && col_start.front() == 0 && col_start.back() == npairs &&
              static_cast<Index>(values.size()) == npairs * s.block_size();
    for (std::size_t j = 1; ok && j < col_start.size(); ++j) ok = col_start[j] >= col_start[j - 1];
    const Index row_term = a.pair_terms(static_cast<Index>(e)).first;  // row levels lie in its range
    for (std::int32_t r : row_level) ok = ok && r >= 0 && r < a.terms[row_term].nlevels;
    if (!ok) throw std::invalid_argument("accumulator state: level pairs are inconsistent");
    s.col_start = std::move(col_start);
    s.row_level = std::move(row_level);
    s.values = std::move(values);
  }
  return a;
}

}  // namespace

void bind_accumulator(py::module_& m) {
  py::class_<NormalEquationsAccumulator>(m, "NormalEquationsAccumulator", R"doc(
Sums of [Z X y]'W[Z X y] over rows, added chunk by chunk and mergeable.

Parameters
----------
p : int
    Number of fixed-effect columns.
term_p : list of int
    Columns per level of each random-effects term.
nlevels : list of int
    Levels of each term's grouping factor, fixed before any row is added.
    Terms must come sorted by decreasing number of levels.

Sums are added in the order the chunks are added or merged, so a given
chunking gives bit-identical sums. The object pickles (its state is plain
arrays whose size does not depend on the number of rows).
)doc")
      .def(py::init([](Index p, const std::vector<Index>& term_p, const std::vector<Index>& nlevels) {
             if (term_p.size() != nlevels.size())
               throw std::invalid_argument("term_p and nlevels must have one entry per term");
             std::vector<TermShape> shapes;
             for (std::size_t k = 0; k < term_p.size(); ++k) shapes.push_back(TermShape{term_p[k], nlevels[k]});
             return NormalEquationsAccumulator(p, shapes);
           }),
           py::arg("p"), py::arg("term_p"), py::arg("nlevels"))
      .def(
          "add_rows",
          [](NormalEquationsAccumulator& a, const VectorArg& y, const MatrixArg& x, const VectorArg& weights,
             const std::vector<CodesArg>& codes, const std::vector<MatrixArg>& z) {
            std::vector<Index> nlev;
            for (const TermShape& s : a.shapes) nlev.push_back(s.nlevels);
            if (codes.size() != a.shapes.size())
              throw std::invalid_argument("codes must have one entry per term (" + std::to_string(a.shapes.size()) + ")");
            const std::vector<TermInput> terms = term_inputs(codes, z, nlev);
            py::gil_scoped_release release;
            a.add_rows(as_map(y), as_map(x), as_map(weights), terms);
          },
          py::arg("y"), py::arg("x"), py::arg("weights"), py::arg("codes"), py::arg("z"),
          "Add one chunk: y (m,), x (m, p), weights (m,) or empty, codes list of (m,) int32, z list of (m, p_k).")
      .def(
          "merge",
          [](NormalEquationsAccumulator& a, const NormalEquationsAccumulator& other) {
            py::gil_scoped_release release;
            a.merge(other);
          },
          py::arg("other"), "Add the sums of another accumulator over other rows (this one's first).")
      .def("keep_fixed_columns", &NormalEquationsAccumulator::keep_fixed_columns, py::arg("kept"),
           "Keep only these fixed-effect columns (ascending indices), e.g. after dropping aliased ones.")
      .def("copy", [](const NormalEquationsAccumulator& a) { return NormalEquationsAccumulator(a); })
      .def_property_readonly("nobs", [](const NormalEquationsAccumulator& a) { return a.n; })
      .def_property_readonly("p", [](const NormalEquationsAccumulator& a) { return a.p; })
      .def_property_readonly("sum_log_weights", [](const NormalEquationsAccumulator& a) { return a.sum_log_weights; })
      .def_property_readonly("xy_cross", [](const NormalEquationsAccumulator& a) {
        MatrixXd full = a.AXX;
        full.triangularView<Eigen::StrictlyUpper>() = full.transpose();
        return full;
      }, "[X y]'W[X y] (p + 1, p + 1) summed so far.")
      .def(py::pickle(&get_state, &set_state));
}
