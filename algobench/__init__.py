"""algobench: a benchmark harness for neural network training algorithms."""

__version__ = "0.1.0"
