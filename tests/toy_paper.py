"""A toy paper's suite config and baselines file, shared by the baselines and claim-reporting tests."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ToyCfg:
    width: int = 4


# One quality figure of "toy-small"; METRIC is replaced by the metric a test needs.
TOY_TOML = """
[paper]
suite = "toy"
title = "A Toy Paper"
arxiv = "2001.00001"
year = 2020

[[baseline]]
id = "toy-acc"
metric = "METRIC"
configs = ["toy-small"]
kind = "quality"
value = 91.5
unit = "%"
dataset = "digits"
split = "test"
protocol = "single model"
source = "Table 2"
confirmed = true
higher_is_better = true
tolerance = 1.0
tolerance_kind = "absolute"
"""


def toy_toml(metric: str, extra: str = "") -> str:
    """The toy baselines file with `metric` and extra `key = value` lines of its baseline."""
    return TOY_TOML.replace("METRIC", metric) + extra
