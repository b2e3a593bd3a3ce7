"""Load benchmarks: bench/run.py (the suite), harness/ (the machinery), scenarios/ (one file each).

Imported as the package ``bench`` from the repository root: ``python -m bench.scenarios.NAME``.
"""
