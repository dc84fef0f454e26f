"""What a record may say about the machine it came from. Records are shared artefacts (CI pages,
result repositories, other teams): by default they keep what comparisons need (the machine id, the
GPU model, the busy load as counts) and leave out the host name, GPU UUIDs, other processes' names
and PIDs, and absolute paths (home folders, the checkout, data and weights folders). A user who
wants those recorded opts in (`milestones run --record-host`).

Pure functions: no I/O; where a default comes from the process (home folder, checkout, host name)
it can be passed in instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path
from typing import Any

from milestones.harness.records import RunRecord

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Dict keys whose values identify a host or a device, wherever they appear (per-rank info, NVML).
PRIVATE_KEYS = ("hostname", "uuid")
# Kept as given: what comparisons group by (a user may set MILESTONES_MACHINE_ID to the host name).
KEEP_KEYS = ("machine_id",)
PRIVACY_KEY = "privacy"
PRIVACY_NOTE = ("host name, GPU UUIDs, other processes' names and PIDs and absolute paths are left out or "
                "made relative; `milestones run --record-host` records them")
_GPU_UUID = re.compile(r"\b(GPU|MIG)-[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")
_OTHER_HOME = re.compile(r"(?<![\w.~-])/(?:home|Users)/[^/\s'\":]+")
# Any other absolute path of two or more parts (not a URL's, not "a/b" or "items/s" inside a word).
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/[^/\s'\":,;()\[\]{}<>]+(?:/[^/\s'\":,;()\[\]{}<>]+)+")
# Where an installed package's own path begins: kept, since it names the library, not the machine.
_PACKAGE_DIRS = ("/site-packages/", "/dist-packages/")


def _elsewhere(m: re.Match[str]) -> str:
    """An absolute path outside the checkout and home: `.../NAME` (a library's from its package dir)."""
    path = m.group()
    tail = "." if path.endswith(".") else ""  # the full stop of a sentence, not part of the name
    path = path[:-1] if tail else path
    for d in _PACKAGE_DIRS:
        if d in path:
            return "..." + path[path.index(d):] + tail
    return ".../" + path.rsplit("/", 1)[1] + tail


def _roots(roots: tuple[str, ...] | None) -> list[str]:
    if roots is None:
        # The checkout and the working folder, unless that is the home folder itself (then `~/...`).
        roots = (str(PROJECT_ROOT),) + ((os.getcwd(),) if os.getcwd() != os.path.expanduser("~") else ())
    out = {os.path.normpath(r) for r in roots if r and os.path.isabs(r) and os.path.normpath(r) != "/"}
    return sorted(out, key=len, reverse=True)  # the deepest first: a checkout inside a home folder


def _home(home: str | None) -> str | None:
    h = os.path.normpath(home if home is not None else os.path.expanduser("~"))
    return h if os.path.isabs(h) and h != "/" else None


def scrub_text(text: str, *, home: str | None = None, roots: tuple[str, ...] | None = None,
               hostname: str | tuple[str, ...] | None = None) -> str:
    """`text` (a log tail, a traceback, an error) with the checkout's absolute paths made relative,
    home folders written `~`, any other absolute path `.../NAME`, GPU UUIDs and the host name masked.
    A host name under 4 characters (or a plain word under 8) is kept: masking "gpu" or "box" would
    mangle ordinary text more than it hides."""
    for root in _roots(roots):
        text = re.sub(re.escape(root) + r"(?![\w.-])/?", lambda m: "" if m.group().endswith("/") else ".", text)
    h = _home(home)
    if h:
        text = re.sub(re.escape(h) + r"(?=/|\b|$)", "~", text)
    text = _OTHER_HOME.sub("~", text)
    text = _ABSOLUTE.sub(_elsewhere, text)
    text = _GPU_UUID.sub(lambda m: f"{m.group(1)}-<uuid>", text)
    hosts = (socket.gethostname(),) if hostname is None else (hostname,) if isinstance(hostname, str) else hostname
    for host in sorted(hosts, key=len, reverse=True):
        # A short plain word ("gpu", "box") would mask ordinary text; such a name is not masked.
        if host and len(host) >= 4 and (len(host) >= 8 or not host.isalpha()):
            text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "<host>", text)
    return text


def relative_path(p: str | os.PathLike, *, home: str | None = None, roots: tuple[str, ...] | None = None) -> str:
    """A path as a record may show it: relative to the checkout (or the working folder) when inside
    it, `~/...` inside the home folder, else only its last part (`.../imagenet`)."""
    s = os.fspath(p)
    if not os.path.isabs(s):
        return s
    s = os.path.normpath(s)
    for root in _roots(roots):
        if s == root:
            return "."
        if s.startswith(root + os.sep):
            return os.path.relpath(s, root)
    h = _home(home)
    if h and (s == h or s.startswith(h + os.sep)):
        return "~" + s[len(h):]
    return ".../" + os.path.basename(s) if os.path.basename(s) else s


def scrub_value(v: Any, record_host: bool = False, **kw: Any) -> Any:
    """Every string in a nested value through `scrub_text`; keys in PRIVATE_KEYS dropped."""
    if record_host:
        return v
    if isinstance(v, str):
        return scrub_text(v, **kw)
    if isinstance(v, dict):
        return {k: x if k in KEEP_KEYS else scrub_value(x, False, **kw) for k, x in v.items() if k not in PRIVATE_KEYS}
    if isinstance(v, (list, tuple)):
        return type(v)(scrub_value(x, False, **kw) for x in v)
    return v


def scrub_env(env: dict[str, Any], record_host: bool, **kw: Any) -> dict[str, Any]:
    """The environment a record keeps. Other processes become counts (how many, and their CPU shares);
    the host name and GPU UUIDs go; paths and UUIDs inside strings are scrubbed."""
    if record_host:
        return env
    out = scrub_value(env, False, **kw)
    hyg = out.get("hygiene")
    if isinstance(hyg, dict) and isinstance(hyg.get("busy_processes"), list):
        busy = [p for p in hyg["busy_processes"] if isinstance(p, dict)]
        out["hygiene"] = {**hyg, "busy_processes": len(hyg["busy_processes"]),
                          "busy_cpu_shares": [p.get("cpu") for p in busy]}
    return out


def scrub_manifest(manifest: dict[str, Any], record_host: bool, **kw: Any) -> dict[str, Any]:
    """A run manifest: the output folder and `--data` paths relative where they can be."""
    if record_host:
        return manifest
    m = dict(manifest)
    opts = m.get("options")
    if isinstance(opts, dict):
        opts = dict(opts)
        path_kw = {k: kw[k] for k in ("home", "roots") if k in kw}
        if isinstance(opts.get("out"), str):
            opts["out"] = relative_path(opts["out"], **path_kw)
        if isinstance(opts.get("data"), dict):
            opts["data"] = {k: relative_path(v, **path_kw) if isinstance(v, str) else v
                            for k, v in opts["data"].items()}
        m["options"] = opts
    return scrub_value(m, False, **kw)


def scrub_record(rec: RunRecord, record_host: bool, **kw: Any) -> RunRecord:
    """The record as it may be shared; its env says what was left out, when anything was."""
    if record_host:
        return rec
    if "hostname" not in kw and isinstance(rec.env.get("hostname"), str):
        # The host the record names, and this one (a record may be written or merged elsewhere).
        kw = {**kw, "hostname": (rec.env["hostname"], socket.gethostname())}
    env = scrub_env(rec.env, False, **kw)
    new = dataclasses.replace(
        rec, env=env, config=scrub_value(rec.config, False, **kw), info=scrub_value(rec.info, False, **kw),
        artifacts=scrub_value(rec.artifacts, False, **kw),
        error=None if rec.error is None else scrub_text(rec.error, **kw))
    if new != rec and PRIVACY_KEY not in new.env:
        new = dataclasses.replace(new, env={**new.env, PRIVACY_KEY: PRIVACY_NOTE})
    return new
