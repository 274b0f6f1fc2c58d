"""`python -m bench`: the load benchmark behind `make bench` (see docs/benchmarks.md)."""
