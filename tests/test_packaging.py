"""A non-editable install ships every package under harness/ and suites/ (harness/launch was once left out)."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_for_setuptools():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set()
    for top, name in (("harness", "milestones.harness"), ("suites", "milestones.suites")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            on_disk.add(".".join((name, *rel)))
    assert on_disk and set(cfg["packages"]) == on_disk


def test_every_data_file_the_harness_reads_is_shipped():
    """A non-editable install must carry the data files next to the harness's modules (the suite catalog)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = set(cfg.get("package-data", {}).get("milestones.harness", []))
    on_disk = {p.name for p in (ROOT / "harness").glob("*.json")}
    assert on_disk and on_disk <= shipped
