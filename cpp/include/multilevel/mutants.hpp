// Hand-written C++ mutants for tests/mutation/run_mutants.py --cpp N.
//
// A build with -DMULTILEVEL_MUTANT=N (CMake: -Ccmake.define.MULTILEVEL_MUTANT=N) switches
// on bug N at its switch point, so the mutation script can check that the tests catch it.
// Every normal build has MULTILEVEL_MUTANT 0: all switch points compile to the correct code.
#pragma once

#ifndef MULTILEVEL_MUTANT
#define MULTILEVEL_MUTANT 0
#endif

/// True in a build made for mutant `n` (a constant expression; the other branch is dead code).
#define ML_MUTANT(n) (MULTILEVEL_MUTANT == (n))
