import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from milestones.harness.errors import UsageError
from milestones.harness.registry import DuplicateNameError, Registry, UnknownNameError, load_suites


@dataclass(frozen=True)
class P:
    x: int = 1


def make() -> Registry:
    reg = Registry()
    s = reg.add_suite("resnet", title="t", arxiv="1512.03385", year=2015, source_file=__file__)
    s.kind("fidelity")(lambda p, c: None)
    s.config("resnet50", P(), scales=("smoke",))
    s.config("resnet18", P(), scales=("smoke", "paper"))
    return reg


def test_duplicate_suite_raises():
    reg = make()
    with pytest.raises(DuplicateNameError):
        reg.add_suite("resnet", title="t", arxiv="x", year=1, source_file=__file__)


def test_duplicate_config_raises_even_across_suites():
    reg = make()
    other = reg.add_suite("alexnet", title="t", arxiv="x", year=2012, source_file=__file__)
    with pytest.raises(DuplicateNameError, match="resnet50"):
        other.config("resnet50", P(), scales=("smoke",))


def test_duplicate_kind_raises():
    reg = make()
    with pytest.raises(DuplicateNameError):
        reg.suite("resnet").kind("fidelity")(lambda p, c: None)


def test_unknown_names_suggest():
    reg = make()
    with pytest.raises(UnknownNameError, match="did you mean 'resnet'"):
        reg.suite("resnt")
    with pytest.raises(UnknownNameError, match="did you mean 'resnet50'"):
        reg.resolve(["resnet5O"])
    assert issubclass(UnknownNameError, UsageError)


def test_bad_scale_kind_and_mutable_params_rejected():
    reg = make()
    s = reg.suite("resnet")
    with pytest.raises(ValueError, match="scale"):
        s.config("a", P(), scales=("huge",))
    with pytest.raises(ValueError, match="kind"):
        s.config("b", P(), scales=("smoke",), kinds=("accuracy",))

    @dataclass
    class Mutable:
        x: int = 1

    with pytest.raises(TypeError, match="frozen"):
        s.config("c", Mutable(), scales=("smoke",))


def test_resolve_expands_suites_and_keeps_order():
    reg = make()
    assert [c.name for c in reg.resolve(["resnet18", "resnet"])] == ["resnet18", "resnet50"]
    assert len(reg.resolve([])) == 2


def test_real_registry_has_resnet_and_versions():
    reg = load_suites()
    s = reg.suite("resnet")
    assert {"resnet50", "resnet50-v1.5", "cifar-resnet110", "resnet50-smoke"} <= set(s.configs)
    # The version is the hash of the suite's own source file, computed here independently.
    src = Path(__file__).resolve().parent.parent / "suites" / "resnet.py"
    assert Path(s.source_file).resolve() == src
    assert s.version == hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    assert s.version != reg.suite("alexnet").version


def test_version_follows_the_source(tmp_path):
    src = tmp_path / "mysuite.py"
    src.write_text("A = 1\n")
    s = Registry().add_suite("mine", title="t", arxiv="x", year=2000, source_file=str(src))
    v1 = s.version
    src.write_text("A = 2\n")  # any edit of the suite makes its records a different version
    v2 = s.version
    src.write_text("A = 1\n")
    assert v1 != v2 and s.version == v1 and len(v1) == 12 and int(v1, 16) >= 0


@pytest.mark.slow
def test_list_json_through_cli(cli):
    r = cli("list", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    by = {row["suite"]: row for row in rows}
    assert {"suite", "title", "arxiv", "year", "configs", "kinds", "scales"} <= set(by["resnet"])
    assert by["resnet"]["arxiv"] == "1512.03385" and "speed" in by["resnet"]["kinds"]
    r = cli("list", "resnt")
    assert r.returncode == 2 and "did you mean 'resnet'" in r.stderr and "Traceback" not in r.stderr
