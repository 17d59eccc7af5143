"""Benchmark harness: per-stage and end-to-end latency per device, budgets, cross-device report."""
