"""Bad input, fuzzed with hypothesis: every reader gives a clear error or a correct value, never a
traceback and never a silently wrong value. Example counts per reader are set below (settings)."""

import json
import math
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from milestones.harness import baselines
from milestones.harness.errors import MilestonesError, RecordError, UsageError
from milestones.harness.records import NONFINITE_KEY, RunRecord
from tests.test_store import make_record

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)

VALID = make_record().to_dict()
FIELDS = sorted(VALID)
# derandomize: the same examples every run (tests/conftest.py loads a derandomized profile too).
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
INF, NAN = float("inf"), float("nan")


def _nonfinite(v) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(_nonfinite(k) or _nonfinite(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_nonfinite(x) for x in v)
    return False


@pytest.mark.slow
@FUZZ
@given(text=st.text(max_size=200))
def test_record_reader_on_arbitrary_text(text):
    try:
        RunRecord.from_json(text)
    except RecordError as e:
        assert "\n" not in str(e)


@FUZZ
@given(field=st.sampled_from(FIELDS), value=json_values)
# Found by `--hypothesis-seed=1` before the seeds were fixed: an infinity crashed the strict JSON write.
@pytest.mark.slow
@example(field="artifacts", value={"": INF})
@example(field="info", value={"a": [1.0, {"b": -INF}]})
@example(field="config", value={"lr": INF})
@example(field="duration_s", value=INF)
@example(field="duration_s", value=10**400)
def test_record_reader_on_a_mutated_field(field, value):
    d = json.loads(json.dumps(VALID))
    d[field] = value
    try:
        rec = RunRecord.from_dict(d)
    except RecordError as e:
        assert "\n" not in str(e)
        return
    # Accepted: then it must round-trip and keep what it was given (never silently altered): a
    # non-finite value is stored as its string, and the record says where.
    again = RunRecord.from_json(rec.to_json())
    if _nonfinite(value):
        assert again.to_dict() == rec.to_dict()
        assert any(w.startswith(field) for w in again.info[NONFINITE_KEY]["where"])
        assert RunRecord.from_json(again.to_json()) == again
        return
    assert again == rec
    if field in ("run_id", "status", "suite_version"):
        assert getattr(rec, field) == value


@pytest.mark.slow
@FUZZ
@given(metric=json_values)
@example(metric={"unit": "s", "higher_is_better": False, "samples": [10**400]})
@example(metric={"unit": "s", "higher_is_better": False, "samples": ["inf", "nan", 1]})
def test_record_reader_on_a_mutated_metric(metric):
    d = json.loads(json.dumps(VALID))
    d["metrics"]["train.step_time"] = metric
    try:
        rec = RunRecord.from_dict(d)
    except RecordError:
        return
    m = rec.metrics["train.step_time"]
    assert [repr(x) for x in m.samples] == [repr(float(x)) for x in metric["samples"]]


@FUZZ
@given(case_field=st.sampled_from(["suite", "config", "kind", "scale", "device", "dtype", "batch_size"]),
       value=json_values)
@pytest.mark.slow
def test_record_reader_on_a_mutated_case(case_field, value):
    d = json.loads(json.dumps(VALID))
    d["case"][case_field] = value
    try:
        rec = RunRecord.from_dict(d)
    except RecordError:
        return
    assert getattr(rec.case, case_field) == value


TOML_CHARS = string.ascii_letters + string.digits + " =[]\"'.,#\n-_{}"


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(text=st.text(alphabet=TOML_CHARS, max_size=200))
def test_baselines_reader_on_arbitrary_text(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("b") / "resnet.toml"
    p.write_text(text)
    f, errors = baselines.parse_file(p)
    assert all("\n" not in e for e in errors)
    assert f is not None or errors


RESNET_TOML = (baselines.default_folder() / "resnet.toml").read_text()


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(key=st.sampled_from(["value", "tolerance", "confirmed", "configs", "kind", "metric", "tolerance_kind",
                            "higher_is_better", "id", "scale", "plus_minus", "tolerence", "unit"]),
       value=st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.text(max_size=6),
                       st.lists(st.text(max_size=4), max_size=2)))
@pytest.mark.slow
def test_baselines_reader_on_a_mutated_entry(tmp_path_factory, key, value):
    import tomllib

    raw = tomllib.loads(RESNET_TOML)
    raw["baseline"][0][key] = value
    p = tmp_path_factory.mktemp("b") / "resnet.toml"
    p.write_text(_to_toml(raw))
    f, errors = baselines.parse_file(p)
    if errors:
        assert all("\n" not in e for e in errors)
        return
    b = next(x for x in f.baselines if x.id == raw["baseline"][0].get("id"))
    if key in ("value", "tolerance") and isinstance(value, (int, float)) and not isinstance(value, bool):
        assert getattr(b, key) == float(value)


def _to_toml(raw) -> str:
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
        if isinstance(v, (int,)):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v)
        return "[" + ", ".join(val(x) for x in v) + "]"

    out = ["[paper]"] + [f"{k} = {val(v)}" for k, v in raw["paper"].items()]
    for b in raw["baseline"]:
        out.append("[[baseline]]")
        out += [f"{json.dumps(k)} = {val(v)}" for k, v in b.items()]
    return "\n".join(out) + "\n"


@pytest.mark.slow
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(text=st.text(alphabet=TOML_CHARS, max_size=150))
def test_run_config_reader_on_arbitrary_text(tmp_path_factory, text):
    from milestones.harness.cli import build_parser, build_run_options

    p = tmp_path_factory.mktemp("c") / "run.toml"
    p.write_text(text)
    args = build_parser().parse_args(["run", "--config", str(p)])
    try:
        build_run_options(args)
    except UsageError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(key=st.sampled_from(["kind", "scale", "device", "dtype", "batch_size", "timeout", "repeat", "seeds",
                            "data", "option", "suites", "bogus"]),
       value=st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                       st.text(alphabet=string.ascii_lowercase + "0123456789", max_size=8),
                       st.lists(st.integers(0, 3), max_size=3)))
@pytest.mark.slow
def test_run_config_reader_on_typed_values(tmp_path_factory, key, value):
    from milestones.harness.cli import build_parser, build_run_options

    p = tmp_path_factory.mktemp("c") / "run.toml"
    p.write_text(f"[run]\n{key} = {json.dumps(value)}\n".replace("true", "true").replace("false", "false"))
    args = build_parser().parse_args(["run", "--config", str(p)])
    try:
        opts, _ = build_run_options(args)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    # Accepted values are the ones that were written, not coerced.
    if key in ("scale", "device", "dtype"):
        assert getattr(opts, key) == value
    if key == "batch_size":
        assert opts.batch_size == value


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(argv=st.lists(st.sampled_from(["run", "list", "compare", "report", "plot", "baselines", "--kind",
                                      "--scale", "--device", "--dtype", "--batch-size", "--timeout", "--repeat",
                                      "--seeds", "--data", "--option", "x", "0", "-1", "1.5", "a=b",
                                      "speed", "cuda", "smoke", "float8", "--json", "--fail-on", "--by"]),
                     max_size=6))
@pytest.mark.slow
def test_cli_arguments_never_traceback(argv):
    from milestones.harness.cli import build_parser, build_run_options

    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "command", None) == "run":
            build_run_options(args)
    except MilestonesError as e:
        assert "\n" not in str(e)
    except SystemExit as e:  # --help / --version only
        assert e.code == 0
