"""`nox -s mutation` points at files that exist and keeps one replacement per operator (the filter is
matched the way cosmic-ray's operators-filter matches it: re.match of the joined patterns)."""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)  # loaded once: nox warns when its sessions are registered again
def _noxfile():
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_targets_exist_and_cover_the_runner_ab_and_history():
    nf = _noxfile()
    assert set(nf.MUTATION_TARGETS) == {"stats", "compare", "store", "records", "timing", "slow_machine", "runner",
                                        "ab", "ab_bursts", "history"}
    for module, tests in nf.MUTATION_TARGETS.values():
        assert (ROOT / module).is_file(), module
        paths = [a.split("::")[0] for a in shlex.split(tests) if a.startswith("tests/")]
        assert paths and all((ROOT / p).is_file() for p in paths), tests


def test_operator_filter_keeps_one_replacement_per_operator():
    nf = _noxfile()
    rx = re.compile("|".join(f"(:?{e})" for e in nf.MUTATION_EXCLUDE))
    excluded = lambda op: bool(rx.match(op))  # noqa: E731
    for kept in ("core/ReplaceBinaryOperator_Add_Sub", "core/ReplaceBinaryOperator_Mul_Div",
                 "core/ReplaceComparisonOperator_Lt_LtE", "core/ReplaceComparisonOperator_Eq_NotEq",
                 "core/ReplaceUnaryOperator_Delete_Not", "core/NumberReplacer", "core/AddNot",
                 "core/ReplaceAndWithOr", "core/ExceptionReplacer"):
        assert not excluded(kept), kept
    for dropped in ("core/ReplaceBinaryOperator_Add_Mul", "core/ReplaceBinaryOperator_Add_BitXor",
                    "core/ReplaceComparisonOperator_Lt_Gt", "core/ReplaceComparisonOperator_Eq_Is",
                    "core/ReplaceUnaryOperator_USub_Invert", "core/ReplaceBinaryOperator_Add_SubX"):
        assert excluded(dropped), dropped


def test_the_session_refuses_an_interpreter_that_imports_another_checkout(tmp_path):
    """Every mutant survives when the tests import another checkout's milestones (a pyenv `nox` shim found
    the interpreter of a sibling worktree's install): the session checks the import before it starts."""
    import subprocess
    import sys

    nf = _noxfile()
    same = subprocess.run([sys.executable, "-c", nf._SAME_CHECKOUT, str(ROOT)], capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    other = subprocess.run([sys.executable, "-c", nf._SAME_CHECKOUT, str(tmp_path)], capture_output=True, text=True)
    assert other.returncode == 1 and f"not from {tmp_path}" in other.stderr
