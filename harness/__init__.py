"""milestones: a benchmark and reproducibility harness for the deep-learning milestone papers."""

__version__ = "0.1.0"
