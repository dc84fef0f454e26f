"""docs/writing-a-suite.md's recipe is a working suite: extracted from the page, registered out of tree,
run through the real CLI, every kind recorded as the page promises."""

import json
import re
from pathlib import Path

import pytest

from milestones.harness import store

ROOT = Path(__file__).resolve().parent.parent


def recipe() -> str:
    doc = (ROOT / "docs" / "writing-a-suite.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- recipe: suites/toy.py -->\n```python\n(.*?)```", doc, re.S)
    assert m, "the recipe block is missing from docs/writing-a-suite.md"
    return m.group(1)


@pytest.mark.slow
def test_the_recipe_runs_every_kind_through_the_cli(cli, tmp_path):
    pkg = tmp_path / "mysuites"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "toy_from_doc.py").write_text(recipe())
    env = {"MILESTONES_EXTRA_SUITES": "tests.fake_suites,mysuites.toy_from_doc",
           "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    r = cli("list", "toy", "--configs", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert {c["config"] for c in json.loads(r.stdout)} == {"toy-linear", "toy-claim"}
    r = cli("run", "toy", "--scale", "proxy", "--kind", "fidelity,speed,quality", "--out", str(tmp_path / "res"),
            "--json", "--option", "n_seeds=2", env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    recs = {(x.case.config, x.case.kind): x for x in (store.read_record(Path(p)) for p in json.loads(r.stdout)["records"])}
    assert set(recs) == {("toy-linear", "fidelity"), ("toy-linear", "speed"), ("toy-claim", "quality")}
    assert all(x.status == "ok" for x in recs.values())
    fid = recs[("toy-linear", "fidelity")]
    assert fid.metrics["params"].value == 650 and fid.metrics["params_within_tolerance"].value == 1.0
    speed = recs[("toy-linear", "speed")]
    assert len(speed.metrics["train.step_time"].samples) >= 3 and speed.metrics["train.flops"].value > 0
    assert speed.metrics["params"].value == 650 and speed.case.batch_size == 32  # cpu_batch_size on a CPU
    q = recs[("toy-claim", "quality")]
    assert q.metrics["train_error.linear"].higher_is_better is False and len(q.metrics["claim_held"].samples) == 2
    claim = q.info["claims"][0]
    assert claim["seeds"] == [0, 1] and claim["held"] == [int(v) for v in q.metrics["claim_held"].samples]
    assert set(q.artifacts["curves"]) == {"linear.seed0", "linear.seed1"}
    assert q.artifacts["curves"]["linear.seed0"]["series"]["loss"]
