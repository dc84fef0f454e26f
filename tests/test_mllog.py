"""MLPerf-style logs: the lines parse as the MLPerf format, with mlperf-logging's own parser too."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from milestones.harness import mllog


class FakeClock:
    """A clock that advances 250 ms per reading, so time to quality is known exactly."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


def _run_training(log_path, reach_target: bool) -> list[str]:
    ctx = SimpleNamespace(options={"mllog": str(log_path)}, seed=7)
    log = mllog.logger_for(ctx)
    log.clock = FakeClock()
    with mllog.run(ctx, benchmark="resnet", global_batch_size=256, opt_base_learning_rate=0.1, logger=log) as lg:
        for epoch, acc in enumerate([0.5, 0.7, 0.76]):
            lg.start("epoch_start", metadata={"epoch_num": epoch})
            lg.end("epoch_stop", metadata={"epoch_num": epoch})
            lg.eval_accuracy(acc, epoch_num=epoch)
            if reach_target and acc >= 0.759:
                lg.success()
    return log_path.read_text().splitlines()


def test_lines_are_mlperf_events_with_required_keys(tmp_path):
    lines = _run_training(tmp_path / "mllog.txt", reach_target=True)
    events = [json.loads(ln[len(":::MLLOG "):]) for ln in lines]
    assert all(ln.startswith(":::MLLOG {") for ln in lines)
    for ev in events:
        assert set(mllog.REQUIRED_KEYS) <= set(ev)
        assert ev["event_type"] in ("INTERVAL_START", "INTERVAL_END", "POINT_IN_TIME")
        assert ev["metadata"]["file"].endswith("test_mllog.py")  # the caller, not the logging module
        assert isinstance(ev["metadata"]["lineno"], int) and ev["metadata"]["lineno"] > 0
    keys = [e["key"] for e in events]
    assert keys.index("run_start") < keys.index("eval_accuracy") < keys.index("run_stop")
    by_key = {e["key"]: e for e in events}
    assert by_key["seed"]["value"] == 7 and by_key["global_batch_size"]["value"] == 256
    assert by_key["run_start"]["event_type"] == "INTERVAL_START"
    assert by_key["run_stop"]["event_type"] == "INTERVAL_END"
    assert by_key["run_stop"]["metadata"]["status"] == "success"
    assert [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"] == [0, 1, 2]


def test_time_to_quality_and_status(tmp_path):
    lines = _run_training(tmp_path / "a.txt", reach_target=False)
    (ttq,) = mllog.time_to_quality(lines)
    assert ttq["status"] == "aborted" and ttq["accuracy"] == pytest.approx(0.76)
    # run_start .. run_stop spans 3 x (epoch_start, epoch_stop, eval_accuracy) + run_stop = 10 readings
    assert ttq["seconds"] == pytest.approx(10 * 0.25)


def test_exception_logs_aborted_and_propagates():
    buf = io.StringIO()
    log = mllog.MLLogger(stream=buf)
    with pytest.raises(RuntimeError):
        with mllog.run(benchmark="gan", logger=log) as lg:
            lg.success()
            raise RuntimeError("diverged")
    stop = [mllog.parse_line(ln) for ln in buf.getvalue().splitlines()][-1]
    assert stop["key"] == "run_stop" and stop["metadata"]["status"] == "aborted"


def test_disabled_logger_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(mllog.ENV, raising=False)
    log = mllog.logger_for(SimpleNamespace(options={}))
    assert not log.enabled and log.event("seed", 1) is None
    monkeypatch.setenv(mllog.ENV, str(tmp_path / "env.txt"))
    mllog.logger_for(None).event("seed", 3)
    assert mllog.parse_line((tmp_path / "env.txt").read_text())["value"] == 3


@pytest.mark.parametrize("line,msg", [
    (':::MLLOG {"key": "seed"', "not JSON"),
    (':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", "key": "k", "value": 1}', "lacks"),
    (':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "LATER", "key": "k", "value": 1, '
     '"metadata": {"file": "f", "lineno": 1}}', "event_type"),
])
def test_malformed_lines_are_rejected(line, msg):
    with pytest.raises(ValueError, match=msg):
        mllog.parse_line(line)


def test_mlperf_logging_parser_reads_our_log(tmp_path):
    parser = pytest.importorskip("mlperf_logging.compliance_checker.mlp_parser",
                                 reason="mlperf-logging is an optional test dependency")
    path = tmp_path / "mllog.txt"
    _run_training(path, reach_target=True)
    loglines, errors = parser.parse_file(str(path), ruleset="5.0.0")
    assert errors == []
    keys = [ll.key for ll in loglines]
    assert keys.count("run_start") == 1 and keys.count("run_stop") == 1 and keys.count("eval_accuracy") == 3
    stop = next(ll for ll in loglines if ll.key == "run_stop")
    start = next(ll for ll in loglines if ll.key == "run_start")
    assert stop.value["metadata"]["status"] == "success"
    assert stop.timestamp - start.timestamp == pytest.approx(2500.0)  # ms, from the fake clock


def test_every_quality_case_can_emit_mllog_through_the_worker(tmp_path):
    import dataclasses

    from milestones.harness.mllog import parse_line, time_to_quality
    from milestones.harness.records import Case
    from milestones.harness.worker import run_spec

    log = tmp_path / "ml.log"
    case = Case("fake", "fake-ok", "quality", "smoke", "cpu", "float32", 2)
    out = run_spec({"case": dataclasses.asdict(case), "seed": 4, "options": {"mllog": str(log)}})
    assert out.status == "ok"
    lines = log.read_text().splitlines()
    events = [parse_line(x) for x in lines]
    keys = [e["key"] for e in events]
    assert keys.index("run_start") < keys.index("run_stop")
    assert next(e for e in events if e["key"] == "seed")["value"] == 4
    assert next(e for e in events if e["key"] == "global_batch_size")["value"] == 2
    assert next(e for e in events if e["key"] == "submission_benchmark")["value"] == "fake/fake-ok"
    assert len(time_to_quality(lines)) == 1
