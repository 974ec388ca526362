"""Benchmarks of the retry tool against what users would use instead, on the CDF emulator.

``python -m bench [--quick] [--json PATH]`` runs every comparison and prints one table; see
``docs/benchmarks.md`` for what each comparison measures and the latest results.

This package's own import must stay cheap: child processes of the cold-start comparison run
``python -m bench.child``, which imports it first.
"""
