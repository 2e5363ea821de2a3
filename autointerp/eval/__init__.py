"""Offline evaluation: synthetic superposition benchmarks (and, later, offline label scoring)."""
