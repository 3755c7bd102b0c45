"""Benchmarks: ``python -m bench NAME`` (or ``livecast bench NAME``)."""
