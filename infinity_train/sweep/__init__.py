"""Scaling sweeps: expanding a sweep spec into runs."""
