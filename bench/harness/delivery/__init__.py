"""The delivery benchmark's phases, one module each, shared by the scripts and the suite.

``options`` (the options and targets), ``publishers`` (stamped publishes), ``phase`` (a
daemon with hooks, one publishing phase, its checks and rows), then one module per
measurement: ``throughput``, ``latency``, ``isolation``, ``baselines``.
bench/scenarios/delivery.py, journal.py and crash.py, and the suite's delivery scenarios,
import these; no scenario imports another.
"""
