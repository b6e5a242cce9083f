// How the loops walk their work: for_rows splits a step's batch rows over threads when there is enough
// of it, and Slots maps the i-th processed step to its time step and to the state slots it reads and
// writes, forward or reversed.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace {

// Runs fn(b0, b1) over batch rows, in parallel when there is enough elementwise work: from 32768 units
// (units_per_row: the row's width, or Cell::row_units inside the step loops).
template <typename F>
void for_rows(int64_t B, int64_t units_per_row, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(units_per_row, 1));
  at::parallel_for(0, B, grain, fn);
}

struct Slots {
  int64_t T;
  bool reverse;
  int64_t step(int64_t i) const { return reverse ? T - 1 - i : i; }  // i-th processed time step
  int64_t in(int64_t t) const { return reverse ? t + 1 : t; }         // buf slot read by step t
  int64_t out(int64_t t) const { return reverse ? t : t + 1; }        // buf slot written by step t
};

}  // namespace
