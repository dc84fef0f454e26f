"""Baselines files: schema validation, references to suites/configs/metrics, and paper verdicts."""

from pathlib import Path

import pytest

from milestones.harness import baselines, compare
from milestones.harness.cli import main
from milestones.harness.errors import BaselineError
from milestones.harness.registry import Registry
from tests.toy_paper import ToyCfg, toy_toml

ROOT = Path(__file__).resolve().parent.parent
F = Path(__file__).parent / "fixtures" / "records"

GOOD = toy_toml("test_accuracy", 'plus_minus = 0.3\nscale = ["proxy", "paper"]\nrecord_factor = 100\n')


@pytest.fixture
def registry():
    reg = Registry()
    s = reg.add_suite("toy", title="A Toy Paper", arxiv="2001.00001", year=2020, source_file=__file__)
    s.config("toy-small", ToyCfg(), scales=("smoke", "proxy", "paper"), kinds=("fidelity", "quality"))
    s.config("toy-speed", ToyCfg(8), scales=("smoke",), kinds=("speed",))
    return reg


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_project_baselines_are_valid():
    reg_paths = baselines.baseline_paths()
    assert (ROOT / "baselines" / "resnet.toml") in reg_paths
    files, errors = baselines.check(reg_paths)
    assert errors == []
    ids = [b.id for f in files for b in f.baselines]
    assert "resnet50-top1-err-10crop" in ids


def test_good_file(tmp_path, registry):
    files, errors = baselines.check([write(tmp_path, "toy.toml", GOOD)], registry)
    assert errors == []
    (b,) = files[0].baselines
    assert b.allowed_scales == ("proxy", "paper") and b.record_factor == 100 and b.plus_minus == 0.3
    assert b.citation == "A Toy Paper (2020, arXiv 2001.00001), Table 2"


@pytest.mark.parametrize("edit,msg", [
    (("tolerance = 1.0", "tolerence = 1.0"), "unknown key 'tolerence' (did you mean 'tolerance'"),
    (("kind = \"quality\"", "kind = \"qualty\""), "unknown kind 'qualty'"),
    (("value = 91.5", "value = \"91.5\""), "value must be an integer or a number"),
    (("confirmed = true", ""), "missing 'confirmed'"),
    (("configs = [\"toy-small\"]", "configs = [\"toy-smal\"]"), "unknown config 'toy-smal' of suite 'toy' (did you mean 'toy-small'"),
    (("suite = \"toy\"", "suite = \"tyo\""), "does not match the file name"),
    (("tolerance_kind = \"absolute\"", "tolerance_kind = \"percent\""), "must be relative or absolute"),
    (("scale = [\"proxy\", \"paper\"]", "scale = \"papr\""), "unknown scale 'papr'"),
    (("metric = \"test_accuracy\"", "metric = \"Test Accuracy\""), "is not a metric name"),
    (("year = 2020", "year = 2020\nurl = 3"), "url must be a string"),
    (("[paper]", "[papers]"), "unknown top-level key 'papers'"),
])
def test_typos_give_one_clear_error(tmp_path, registry, edit, msg):
    text = GOOD.replace(*edit)
    _, errors = baselines.check([write(tmp_path, "toy.toml", text)], registry)
    assert any(msg in e for e in errors), errors
    assert all("\n" not in e for e in errors)


def test_invalid_toml_and_unknown_suite(tmp_path, registry):
    _, errors = baselines.check([write(tmp_path, "toy.toml", GOOD + "\n[[baseline]\n")], registry)
    assert len(errors) == 1 and "not valid TOML" in errors[0]
    _, errors = baselines.check([write(tmp_path, "other.toml", GOOD.replace('suite = "toy"', 'suite = "other"'))],
                                registry)
    assert any("unknown suite 'other'" in e for e in errors)


def test_duplicate_ids_across_files(tmp_path, registry):
    a = write(tmp_path, "toy.toml", GOOD)
    sub = tmp_path / "b"
    sub.mkdir()
    b = write(sub, "toy.toml", GOOD)
    _, errors = baselines.check([a, b], registry)
    assert any("duplicate id" in e and str(a) in e for e in errors)


def test_kind_not_registered_is_a_warning(tmp_path, registry):
    warnings: list[str] = []
    _, errors = baselines.check([write(tmp_path, "toy.toml", GOOD.replace("toy-small", "toy-speed"))], registry,
                                warnings=warnings)
    assert errors == [] and "does not register kind 'quality'" in warnings[0]


def test_metrics_checked_against_records(tmp_path, registry):
    text = GOOD.replace("test_accuracy", "test_acuracy")
    index = {("toy", "toy-small", "quality"): {"test_accuracy", "claim_held"}}
    _, errors = baselines.check([write(tmp_path, "toy.toml", text)], registry, index)
    assert any("metric 'test_acuracy' is not in the records" in e and "test_accuracy" in e for e in errors)


def test_load_raises_one_line(tmp_path):
    write(tmp_path, "toy.toml", GOOD.replace("tolerance = 1.0", "tolerence = 1.0"))
    with pytest.raises(BaselineError, match="tolerence"):
        baselines.load(tmp_path)
    with pytest.raises(BaselineError, match="no baselines folder"):
        baselines.load(tmp_path / "missing")


def test_cli_check_and_list(tmp_path, capsys):
    # Only the ResNet file: the other suites' files are checked by `milestones baselines check` in CI.
    assert main(["baselines", "check", str(ROOT / "baselines" / "resnet.toml")]) == 0
    assert "ok:" in capsys.readouterr().out
    write(tmp_path, "resnet.toml", (ROOT / "baselines" / "resnet.toml").read_text().replace("tolerance_kind", "tolerance_knd", 1))
    assert main(["baselines", "check", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'tolerance_knd'" in err
    assert main(["baselines", "list", "resnet", "--json"]) == 0
    assert '"resnet50-top1-err-10crop"' in capsys.readouterr().out
    assert main(["baselines", "list", "resnt"]) == 2
    assert "did you mean 'resnet'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- paper verdicts
def test_paper_verdicts_on_fixture_records():
    recs = [x.record for x in compare.load([F / "quality"])]
    rows = compare.compare_with_paper(recs, baselines.load())
    v = {(r.baseline.id, r.scale): r for r in rows}
    ok = v[("cifar-resnet110-test-err-mean", "paper")]
    assert ok.verdict == "reproduced" and ok.ours == pytest.approx(6.61) and ok.n == 3
    proxy = v[("cifar-resnet110-test-err-mean", "proxy")]
    assert proxy.verdict == "not comparable" and "scale proxy" in proxy.reason and proxy.delta is None
    bad = v[("resnet50-top1-err-10crop", "paper")]
    assert bad.verdict == "not reproduced" and bad.delta == pytest.approx(24.1333 - 22.85, abs=1e-3)
    assert "worse than the paper" in bad.reason
    assert v[("resnet50-top5-err-10crop", "paper")].verdict == "not measured"
    assert v[("resnet50-macs", "paper")].verdict == "reproduced"


def test_protocol_and_unit_differences_are_not_comparable(tmp_path):
    recs = [x.record for x in compare.load([F / "quality"])]
    text = (ROOT / "baselines" / "resnet.toml").read_text()
    text = text.replace('protocol = "10-crop, single model, option B"',
                        'protocol = "10-crop, single model, option B"\nprotocol_ours = "single centre crop"', 1)
    text = text.replace('unit = "MAC/image"', 'unit = "GMAC"', 3)
    write(tmp_path, "resnet.toml", text)
    rows = compare.compare_with_paper(recs, baselines.load(tmp_path))
    v = {r.baseline.id: r for r in rows if r.scale == "paper"}
    assert v["resnet50-top1-err-10crop"].verdict == "not comparable"
    assert "protocol differs: single centre crop" in v["resnet50-top1-err-10crop"].reason
    assert v["resnet50-macs"].verdict == "not comparable" and "unit MAC/image vs paper GMAC" in v["resnet50-macs"].reason
