"""The fidelity kinds' shared check: a figure of our model (parameters, MACs, neurons, training compute)
against the figure the paper states, as a relative error and a within-tolerance flag."""

from __future__ import annotations

from milestones.harness.suite_api import Metrics


def against_paper(m: Metrics, info: dict, name: str, ours: float, paper: float | None, tolerance: float) -> bool:
    """Adds `{name}_rel_error` (|ours / paper - 1|) and `{name}_within_tolerance` (1.0 when that error is at
    most `tolerance`) and records the paper's figure as info[`paper_{name}`]. Where the paper states no
    figure (None, as the smoke configs set), it adds nothing and returns False."""
    if not paper:
        return False
    rel = ours / paper - 1
    m.single(f"{name}_rel_error", "fraction", abs(rel))
    m.single(f"{name}_within_tolerance", "bool", float(abs(rel) <= tolerance))
    info[f"paper_{name}"] = paper
    return True
