"""Optional dependencies by extra: a suite that needs one which is missing fails with one line naming it.

The core install measures every suite's fidelity and speed; the RL emulator and the language tools are
extras (`pip install 'milestones[rl]'`, `'milestones[text]'`, `'milestones[bench]'`, or `'milestones[all]'`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from milestones.harness.errors import MilestonesError

# import name -> (extra, distribution name): the one table of which extra brings which module.
EXTRAS: dict[str, tuple[str, str]] = {
    "gymnasium": ("rl", "gymnasium"),
    "ale_py": ("rl", "ale-py"),
    "sacrebleu": ("text", "sacrebleu"),
    "tokenizers": ("text", "tokenizers"),
    "safetensors": ("text", "safetensors"),
    "asv": ("bench", "asv"),
    "pytest_benchmark": ("bench", "pytest-benchmark"),
    "submitit": ("slurm", "submitit"),
}


class MissingExtra(MilestonesError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str) -> ModuleType:
    """Import `module` (a top-level name from EXTRAS, or a submodule of one) or raise MissingExtra."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != top:
            raise
        extra, dist = EXTRAS.get(top, ("all", top))
        raise MissingExtra(f"{dist} is not installed: pip install 'milestones[{extra}]'") from None
