// The compiled core of multilevel, one binding file per model family.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_lmm(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++/Eigen core of multilevel (sufficient statistics, objectives, factorizations).";
  bind_lmm(m);
}
