"""Side-by-side benchmarks of greenworks against raw gevent baselines (see README.md)."""
