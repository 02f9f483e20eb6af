"""facerec benchmarks: each bench_*.py measures facerec against a baseline in the same run."""
