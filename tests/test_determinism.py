"""On the CPU, a quality case's loss trajectory is bitwise identical across repeats with the same seed."""

import pytest

from milestones.harness import store

TIMING_WORDS = ("second", "wall", "time", "per_s", "throughput")


@pytest.mark.slow
def test_quality_case_is_bitwise_repeatable_on_cpu(cli, tmp_path):
    r = cli("run", "adam-digits-smoke", "--kind", "quality", "--deterministic", "--repeat", "2", "--seed", "3",
            "--out", str(tmp_path), timeout=900)
    assert r.returncode == 0, r.stderr
    a, b = sorted(store.load_records(tmp_path), key=lambda x: x.info["repeat_index"])
    for rec in (a, b):
        assert rec.info["deterministic"] is True and rec.info["seed"] == 3
        assert "bitwise" in rec.info["determinism_note"]
    curves_a, curves_b = a.artifacts["curves"], b.artifacts["curves"]
    assert curves_a and set(curves_a) == set(curves_b)
    for name in curves_a:
        # exact float equality, not approx: the trajectories must be the same bits
        assert curves_a[name]["series"] == curves_b[name]["series"], name
        assert curves_a[name]["step"] == curves_b[name]["step"], name
    for name, m in a.metrics.items():
        if not any(w in name for w in TIMING_WORDS):
            assert m.samples == b.metrics[name].samples, name
