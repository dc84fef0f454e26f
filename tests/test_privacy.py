"""Issue 12, item 17: records are shared artefacts. By default no host name, GPU UUID, other
processes' names or PIDs, or absolute paths reach a record or a run manifest; what comparisons need
(machine id, GPU model, busy load as counts) stays; `record_host=True` (`--record-host`) keeps all."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from milestones.harness import privacy, store
from milestones.harness.cli import build_parser
from tests.test_store import make_record as _make

ROOT = Path(__file__).resolve().parent.parent
UUID = "GPU-0123abcd-4567-89ab-cdef-0123456789ab"
ROOTS = ("/work/checkout",)
KW = dict(home="/home/alice", roots=ROOTS, hostname="node17.cluster")

ENV = {
    "machine_id": "nvidia-h100-0001", "hostname": "node17.cluster", "gpu": "NVIDIA H100 80GB HBM3",
    "nvidia": {"available": True, "driver": "550.54", "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                                                  "uuid": UUID, "other_processes": 2}]},
    "hygiene": {"loadavg": [3.0, 2.0, 1.0], "busy_processes": [{"pid": 4242, "name": "secret-job", "cpu": 0.9},
                                                              {"pid": 77, "name": "python", "cpu": 0.4}]},
    "env_vars": {"CUDA_VISIBLE_DEVICES": UUID},
}
TAIL = ('Traceback (most recent call last):\n  File "/work/checkout/suites/resnet.py", line 3\n'
        '  File "/home/alice/venv/lib/python3.11/site-packages/torch/nn.py", line 9\n'
        f'OSError: /home/bob/data/x missing on node17.cluster ({UUID})\n')


def test_scrub_env_keeps_what_comparisons_need():
    e = privacy.scrub_env(ENV, False, **KW)
    assert "hostname" not in e and "uuid" not in e["nvidia"]["gpus"][0]
    assert e["machine_id"] == ENV["machine_id"] and e["gpu"] == ENV["gpu"] and e["nvidia"]["driver"] == "550.54"
    assert e["nvidia"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3" and e["nvidia"]["gpus"][0]["other_processes"] == 2
    assert e["hygiene"]["busy_processes"] == 2 and e["hygiene"]["busy_cpu_shares"] == [0.9, 0.4]
    assert e["hygiene"]["loadavg"] == [3.0, 2.0, 1.0] and e["env_vars"]["CUDA_VISIBLE_DEVICES"] == "GPU-<uuid>"
    text = json.dumps(e)
    for secret in ("node17", "secret-job", "4242", "0123abcd"):
        assert secret not in text
    assert ENV["hostname"] == "node17.cluster" and "uuid" in ENV["nvidia"]["gpus"][0]  # the input is not changed
    assert privacy.scrub_env(ENV, True) is ENV
    same = privacy.scrub_env({**ENV, "machine_id": "node17.cluster"}, False, **KW)
    assert same["machine_id"] == "node17.cluster"  # what records are grouped by is never altered
    assert privacy.scrub_env(e, False, **KW) == e  # idempotent


def test_scrub_text_paths_uuids_and_host():
    out = privacy.scrub_text(TAIL, **KW)
    assert 'File "suites/resnet.py"' in out and 'File "~/venv/lib/python3.11/site-packages/torch/nn.py"' in out
    assert "OSError: ~/data/x missing on <host> (GPU-<uuid>)" in out
    assert "/home/" not in out and "/work/checkout" not in out
    # A folder that only starts like the checkout is not in it: elsewhere, so `.../NAME` (issue 24).
    assert privacy.scrub_text("/work/checkout", **KW) == "." and privacy.scrub_text("/work/checkouts/x", **KW) == \
        ".../x"
    assert privacy.scrub_text("/home/alicex/y", home="/home/alice", roots=(), hostname="") == "~/y"  # another home
    assert privacy.scrub_text("/root/x and /rootfs/y", home="/root", roots=(), hostname="") == "~/x and .../y"
    assert privacy.scrub_text("node17.cluster2 ab", home="/h", roots=(), hostname="node17.cluster") == \
        "node17.cluster2 ab"
    assert privacy.scrub_text("ab on ab", home="/h", roots=(), hostname="ab") == "ab on ab"  # too short to mask
    assert privacy.scrub_text("no gpu here", home="/h", roots=(), hostname="gpu") == "no gpu here"  # a plain word
    assert privacy.scrub_text("on gpu01", home="/h", roots=(), hostname="gpu01") == "on <host>"


def test_relative_path():
    rp = lambda p: privacy.relative_path(p, home="/home/alice", roots=ROOTS)  # noqa: E731
    assert rp("/work/checkout/results/x") == "results/x" and rp("/work/checkout") == "."
    assert rp("/home/alice/weights/r50.pth") == "~/weights/r50.pth" and rp("/home/alice") == "~"
    assert rp("/data/imagenet") == ".../imagenet" and rp("/data/imagenet/") == ".../imagenet"
    assert rp("results") == "results" and rp("/") == "/"


def test_written_record_and_manifest_are_scrubbed(tmp_path):
    rec = dataclasses.replace(
        _make(), env=ENV, error=f"OSError: /home/bob/data/x on node17.cluster ({UUID})",
        info={"log_tail": TAIL, "ranks": [{"rank": 0, "hostname": "node17.cluster"}]},
        artifacts={"weights": {"file": "/home/alice/w/r50.pth"}}, config={"data": "/home/alice/d"})
    written, p = store.save_record(tmp_path, rec)
    text = p.read_text()
    for secret in ("node17", "secret-job", "4242", "0123abcd", "/home/", "alice", "bob"):
        assert secret not in text, secret
    back = store.read_record(p)
    assert back == written and back.env[privacy.PRIVACY_KEY] == privacy.PRIVACY_NOTE
    assert back.metrics == rec.metrics and back.env["machine_id"] == ENV["machine_id"]
    assert back.artifacts["weights"]["file"] == "~/w/r50.pth" and back.info["ranks"] == [{"rank": 0}]
    # Opted in: everything as it was.
    kept, p2 = store.save_record(tmp_path / "host", rec, record_host=True)
    assert store.read_record(p2) == rec and kept is rec

    m = store.write_manifest(tmp_path / "m", {"run_id": "r", "cases": [], "options": {
        "out": str(Path.home() / "results"), "data": {"imagenet": "/data/imagenet", "labels": str(ROOT / "l.txt")}}})
    opts = json.loads(m.read_text())["options"]
    assert opts["out"] == "~/results" and opts["data"] == {"imagenet": ".../imagenet", "labels": "l.txt"}
    m2 = store.write_manifest(tmp_path / "m2", {"options": {"data": {"imagenet": "/data/imagenet"}}}, record_host=True)
    assert json.loads(m2.read_text())["options"]["data"]["imagenet"] == "/data/imagenet"


def test_a_record_without_private_details_is_unchanged(tmp_path):
    rec = _make()
    written, p = store.save_record(tmp_path, rec)
    assert written == rec and privacy.PRIVACY_KEY not in written.env and store.read_record(p) == rec


def test_record_host_flag_is_on_run():
    args = build_parser().parse_args(["run", "fake-ok", "--record-host"])
    assert getattr(args, "record_host", False) is True
    assert getattr(build_parser().parse_args(["run", "fake-ok"]), "record_host", False) is False
