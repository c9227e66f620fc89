"""gliomaseg's benchmarks: ``python -m benchmarks.run`` (see benchmarks/run.py and docs/performance.md).

Speed and memory targets are checked here, never in the tests: the tests check behaviour.
"""
