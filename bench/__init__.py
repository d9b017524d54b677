"""Benchmarks of ephemeral_auth's foundation (run ``bench/run.py``; not a test suite)."""
