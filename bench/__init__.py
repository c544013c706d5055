"""Benchmarks that print the project figure beside a baseline measured in the same run, as a ratio."""
