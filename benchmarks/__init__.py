"""Scripts that print speed figures: `uv run --group dev python -m benchmarks.NAME`."""
