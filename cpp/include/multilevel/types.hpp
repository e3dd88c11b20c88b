// Common array types of the multilevel core.
//
// Inputs come from numpy without copies: matrices may have any row and column
// stride (a column slice of a larger array, a Fortran- or C-ordered block), so
// they are taken as strided Maps. Nothing in the core keeps a pointer into an
// input after the call that received it returns.
#pragma once

#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <cstdint>

namespace multilevel {

using Index = Eigen::Index;
using Eigen::MatrixXd;
using Eigen::VectorXd;

/// Column-major sparse matrix with 32-bit indices.
using SparseMatrix = Eigen::SparseMatrix<double, Eigen::ColMajor, int>;

/// Read-only view of a float64 matrix with arbitrary strides.
using StridedMatrixMap =
    Eigen::Map<const MatrixXd, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

/// Read-only view of a float64 vector with arbitrary stride.
using StridedVectorMap = Eigen::Map<const VectorXd, 0, Eigen::InnerStride<Eigen::Dynamic>>;

/// Read-only view of an int32 vector of level codes with arbitrary stride.
using CodesMap = Eigen::Map<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>, 0,
                            Eigen::InnerStride<Eigen::Dynamic>>;

}  // namespace multilevel
