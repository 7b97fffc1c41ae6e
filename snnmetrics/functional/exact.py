"""Counts kept in floating tensors: the largest count each dtype holds exactly.

Counts are summed in float32 where they can be (several times faster than float64 or
int64 on the CPU, and a 0/1 indicator needs no conversion) and in float64 beyond that.
"""

FLOAT32_EXACT = 2**24  # float32 holds every integer up to here
FLOAT64_EXACT = 2**53  # float64 likewise
