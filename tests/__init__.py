"""The test suite, a package so that the benchmarks can import the end-to-end harness."""
