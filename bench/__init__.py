"""Benchmarks (`tickstock bench`): each prints a table and a last-line JSON object."""
