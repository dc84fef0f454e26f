"""Optional extras: a missing dependency fails with one line that names the extra to install."""

import subprocess
import sys

import pytest

from milestones.harness import extras
from milestones.harness.errors import MilestonesError


def test_require_returns_the_module_when_installed():
    assert extras.require("json").dumps([1]) == "[1]"


def test_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "not_a_real_module_xyz", ("rl", "not-a-real-dist"))
    with pytest.raises(extras.MissingExtra) as e:
        extras.require("not_a_real_module_xyz")
    assert str(e.value) == "not-a-real-dist is not installed: pip install 'milestones[rl]'"
    assert isinstance(e.value, MilestonesError) and e.value.exit_code == 2


def test_an_import_error_inside_the_extra_is_not_disguised(tmp_path, monkeypatch):
    # The package exists but one of its own imports is broken: that is a bug to show, not a missing extra.
    pkg = tmp_path / "brokenextra_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import not_there_either_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as e:
        extras.require("brokenextra_xyz")
    assert not isinstance(e.value, extras.MissingExtra) and e.value.name == "not_there_either_xyz"


def test_installed_import_names_are_namespaced(tmp_path):
    # No generic top-level `harness` or `suites` is importable outside the checkout: only milestones.*.
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def imports(name: str) -> bool:
        return subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, env=env,
                              capture_output=True).returncode == 0

    assert imports("milestones.harness.cli") and imports("milestones.suites")
    assert not imports("harness") and not imports("suites")
