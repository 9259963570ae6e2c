"""Scripts that print speed figures: `uv run python -m benchmarks.NAME`."""
