// The compiled core of multilevel, one binding file per model family.
#include <pybind11/pybind11.h>

#include "multilevel/parallel.hpp"

namespace py = pybind11;

void bind_accumulator(py::module_& m);
void bind_lmm(py::module_& m);
void bind_cluster_sums(py::module_& m);
void bind_glmm(py::module_& m);

// The module is built once per instruction set under different names (see CMakeLists.txt).
#ifndef MULTILEVEL_MODULE_NAME
#define MULTILEVEL_MODULE_NAME _core_base
#endif

PYBIND11_MODULE(MULTILEVEL_MODULE_NAME, m) {
  m.doc() = "C++/Eigen core of multilevel (sufficient statistics, objectives, factorizations).";
  m.def("get_num_threads", &multilevel::max_threads, "Threads the core uses (1 if built without OpenMP).");
  m.def("set_num_threads", &multilevel::set_max_threads, py::arg("n"),
        "Set the number of threads of the core for the whole process (0: the default); results do not depend on it.");
  bind_accumulator(m);
  bind_lmm(m);
  bind_cluster_sums(m);
  bind_glmm(m);
}
