"""Helpers for pushy's own tests, the demo and the benchmark: real servers, started
and stopped by process id."""
