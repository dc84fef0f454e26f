"""The one table of `milestones run` options. It generates the command-line flags, validates the TOML run
file and builds the frozen RunOptions the runner reads; every value is checked here, once.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from milestones.harness.errors import UsageError
from milestones.harness.registry import KINDS, SCALES, did_you_mean

DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
# Seconds a case may run before it is killed, by scale, unless --timeout says otherwise. A proxy quality
# case trains several seeds: on a busy 2-core machine the slowest took ~20 min, so proxy allows an hour.
DEFAULT_TIMEOUT_S = {"smoke": 900.0, "proxy": 3600.0, "paper": 7 * 24 * 3600.0}


class Invalid(ValueError):
    """A value an option does not accept; the message completes "<where> must be ...", unless `whole`
    (then it is the whole message, e.g. "unknown scale 'huge' (did you mean ...)")."""

    def __init__(self, msg: str, whole: bool = False) -> None:
        super().__init__(msg)
        self.whole = whole

    def message(self, where: str, value: Any) -> str:
        return f"{where}: {self}" if self.whole else f"{where} must be {self}, not {value!r}"


# ------------------------------------------------------------------------------------------- checks
def _int(v: Any, *, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise Invalid("an integer")
    if minimum is not None and v < minimum:
        raise Invalid("a positive integer" if minimum == 1 else f"an integer >= {minimum}")
    return v


def positive_int(v: Any) -> int:
    try:
        return _int(v, minimum=1)
    except Invalid:
        raise Invalid("a positive integer") from None


def integer(v: Any) -> int:
    return _int(v)


def positive_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Invalid("a positive number")
    x = float(v)
    if not (x > 0 and math.isfinite(x)):
        raise Invalid("a positive number")
    return x


def choice(what: str, options: tuple[str, ...], *, prefix: bool = False) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise Invalid(f"one of {', '.join(options)}")
        key = v.split(":")[0] if prefix else v
        if key not in options:
            raise Invalid(f"unknown {what} {v!r}{did_you_mean(key, options)}; choose from {', '.join(options)}",
                          whole=True)
        if prefix and ":" in v and not v.split(":", 1)[1].isdigit():
            raise Invalid(f"one of {', '.join(options)} (with :N, a device index)")
        return v
    return check


def kinds(v: Any) -> tuple[str, ...]:
    items = [x.strip() for x in v.split(",")] if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise Invalid(f"comma-separated kinds from {', '.join(KINDS)}")
    out = tuple(x for x in items if x)
    if not out:
        raise Invalid(f"at least one kind from {', '.join(KINDS)}")
    for k in out:
        if k not in KINDS:
            raise Invalid(f"unknown kind {k!r}{did_you_mean(k, KINDS)}; choose from {', '.join(KINDS)}", whole=True)
    return out


def mode_list(v: Any) -> tuple[str, ...]:
    """Execution modes (measure/modes.py) as canonical strings, presets expanded."""
    from milestones.harness.measure.modes import PRESETS, ModeError, parse_modes

    if not isinstance(v, (str, list, tuple)):
        raise Invalid(f"comma-separated execution modes or a preset ({', '.join(PRESETS)})")
    try:
        return parse_modes(v)
    except ModeError as e:
        raise Invalid(f"{e}", whole=True) from None


def seed_list(v: Any) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise Invalid("a list of integer seeds")
    try:
        return tuple(_int(x) for x in v)
    except Invalid:
        raise Invalid("a list of integer seeds") from None


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid("true or false")
    return v


def text(v: Any) -> str:
    if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v) == "":
        raise Invalid("a non-empty string")
    return str(v)


def path(v: Any) -> Path:
    if isinstance(v, Path):
        return v
    if not isinstance(v, str) or not v:
        raise Invalid("a path")
    return Path(v)


def string_table(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise Invalid("a table of NAME = \"VALUE\" strings")
    return dict(v)


def cli_number(kind: type) -> Callable[[str], Any]:
    """argparse type: the flag's text as a number (the table's check then decides if it is allowed)."""
    def parse(s: str) -> Any:
        try:
            return kind(s.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {s!r}") from None
    return parse


def cli_seeds(s: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return out


def key_value(s: str) -> tuple[str, str]:
    """argparse type of a repeated NAME=VALUE flag."""
    if "=" not in s or not s.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {s!r}")
    k, v = s.split("=", 1)
    return k.strip(), v


# -------------------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Option:
    """One run option: its attribute on RunOptions, its flag, its key in a TOML run file, its check."""

    attr: str
    flag: str
    check: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str | None = None
    toml_key: str | None = None  # None: not allowed in a run file
    action: str | None = None  # "store_true" | "append" (NAME=VALUE) | "torchrun"
    nargs: str | None = None
    const: Any = None

    def where(self, source: str) -> str:
        return self.flag if source == "cli" else f"{source}: {self.toml_key!r}"


OPTIONS: tuple[Option, ...] = (
    Option("kinds", "--kind", kinds, ("fidelity", "speed"), "comma-separated kinds: fidelity,speed,quality "
           "(default fidelity,speed; quality cases exist at --scale proxy and paper)", "KINDS", "kind"),
    Option("scale", "--scale", choice("scale", SCALES), "smoke", "smoke (seconds per case on a CPU) | proxy (minutes: "
           "small real data, checks each paper's claim) | paper (the paper's setup; a GPU and your data)",
           "SCALE", "scale"),
    Option("device", "--device", choice("device", DEVICES, prefix=True), "auto", "auto | cpu | cuda | cuda:N "
           "(default auto: cuda when torch sees one)", "DEVICE", "device"),
    Option("dtype", "--dtype", choice("dtype", DTYPES), "float32", "float32 | bfloat16 | float16 (default float32)",
           "DTYPE", "dtype"),
    Option("modes", "--modes", mode_list, ("cast",), "comma-separated execution modes, each its own case: cast "
           "(the --dtype cast, default), fp32, tf32, amp-bf16, amp-fp16, each +channels-last and/or +compile[:"
           "default|max-autotune|reduce-overhead][@BACKEND]; presets: field (fp32, tf32, amp-bf16+channels-last, "
           "amp-bf16+compile), cpu (fp32, fp32+compile, amp-bf16); see docs/modes.md", "MODES", "modes"),
    Option("batch_size", "--batch-size", positive_int, None, "override every speed and quality case's batch size "
           "(recorded as the batch's source)", "N", "batch_size"),
    Option("out", "--out", path, Path("results"), "results folder; records go to OUT/<machine>/<run-id>/ "
           "(default results)", "DIR", "out"),
    Option("timeout", "--timeout", positive_float, None, "seconds per case before it is killed (default by scale: "
           + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TIMEOUT_S.items()) + ")", "S", "timeout"),
    Option("profile", "--profile", boolean, False, "record a kernel table per speed case (torch.profiler)",
           toml_key="profile", action="store_true"),
    Option("peak_tflops", "--peak-tflops", positive_float, None, "the device's peak TFLOP/s for MFU (when the "
           "built-in table does not know it)", "T", "peak_tflops"),
    Option("seed", "--seed", integer, 0, "base seed (default 0); a quality case runs its seeds from here",
           "N", "seed"),
    Option("seeds", "--seeds", seed_list, None, "comma-separated seeds for quality cases (even one: --seeds 7)",
           "A,B,...", "seeds"),
    Option("deterministic", "--deterministic", boolean, False, "seed everything and turn on torch's "
           "deterministic algorithms", toml_key="deterministic", action="store_true"),
    Option("threads", "--threads", positive_int, None, "torch threads in each case process (default: the cores "
           "not busy with other work when the run starts)", "N", "threads"),
    Option("data", "--data", string_table, {}, "user data for paper-scale cases, e.g. imagenet=/data/imagenet "
           "(repeatable)", "NAME=PATH", "data", action="append"),
    Option("options", "--option", string_table, {}, "suite-specific option, e.g. n_seeds=5 (repeatable)",
           "KEY=VALUE", "option", action="append"),
    Option("repeat", "--repeat", positive_int, 1, "run each case N times, same seed (run-to-run spread)", "N",
           "repeat"),
    Option("find_max_batch", "--find-max-batch", positive_int, None, "search (doubling from 1, up to CAP) for the "
           "largest batch that runs; recorded", "CAP", "find_max_batch", nargs="?", const=4096),
    Option("nproc", "--nproc", positive_int, 1, "run speed cases on N ranks per node under torchrun "
           "(DistributedDataParallel; NCCL on GPUs, gloo on CPUs)", "N", "nproc"),
    Option("record_host", "--record-host", boolean, False, "keep the host name, absolute paths and other "
           "processes' names in records (off: records are safe to share)", toml_key="record_host",
           action="store_true"),
)
# torchrun's rendezvous options, passed through as given (several nodes).
TORCHRUN_FLAGS: tuple[str, ...] = ("--nnodes", "--node-rank", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id",
                                   "--master-addr", "--master-port")
BY_ATTR = {o.attr: o for o in OPTIONS}
TOML_KEYS = {o.toml_key: o for o in OPTIONS if o.toml_key} | {"suites": None}


def _validate(self: Any) -> None:
    for o in OPTIONS:
        v = getattr(self, o.attr)
        if v is None and o.default is None:
            continue
        try:
            object.__setattr__(self, o.attr, o.check(v))
        except Invalid as e:
            raise UsageError(e.message(o.flag, v)) from None
    for i, a in enumerate(self.torchrun_args):
        if not isinstance(a, str):
            raise UsageError(f"torchrun argument {i} must be a string, not {a!r}")
    object.__setattr__(self, "torchrun_args", tuple(self.torchrun_args))
    mixed = [m for m in self.modes if not m.startswith("cast")]
    if mixed and self.dtype != "float32":
        # a mode's precision replaces the cast: its weights are float32 masters
        raise UsageError(f"--modes {','.join(mixed)} set their own precision over float32 weights; "
                         f"use --dtype float32 (not {self.dtype}) or the mode cast")


def _timeout_for(self: Any, scale: str | None = None) -> float:
    """The --timeout, or the scale's default."""
    return self.timeout if self.timeout is not None else DEFAULT_TIMEOUT_S[scale or self.scale]


RunOptions = make_dataclass(
    "RunOptions",
    [(o.attr, Any, field(default_factory=(lambda d=o.default: dict(d) if isinstance(d, dict) else d)))
     for o in OPTIONS] + [("torchrun_args", tuple, field(default=()))],
    frozen=True, namespace={"__post_init__": _validate, "timeout_for": _timeout_for,
                            "__doc__": "The options of one `milestones run`, generated from OPTIONS."},
)
RunOptions.__module__ = __name__


# ---------------------------------------------------------------------------------------- generators
def add_flags(parser: argparse.ArgumentParser) -> None:
    """The `run` flags, from the table. Values stay raw strings here: RunOptions checks them."""
    for o in OPTIONS:
        kw: dict[str, Any] = {"help": o.help, "dest": o.attr}
        if o.action == "store_true":
            kw.update(action="store_true", default=False)
        elif o.action == "append":
            kw.update(action="append", type=key_value, metavar=o.metavar)
        else:
            kw.update(metavar=o.metavar)
            if o.check in (positive_int, integer):
                kw.update(type=cli_number(int))
            elif o.check is positive_float:
                kw.update(type=cli_number(float))
            elif o.check is seed_list:
                kw.update(type=cli_seeds)
            if o.nargs:
                kw.update(nargs=o.nargs, const=o.const)
        parser.add_argument(o.flag, **kw)
    for flag in TORCHRUN_FLAGS:
        parser.add_argument(flag, dest="torchrun_" + flag[2:].replace("-", "_"), metavar="VALUE",
                            help=f"passed to torchrun as {flag} (several nodes)")


def torchrun_args(ns: argparse.Namespace) -> tuple[str, ...]:
    out: list[str] = []
    for flag in TORCHRUN_FLAGS:
        v = getattr(ns, "torchrun_" + flag[2:].replace("-", "_"), None)
        if v is not None:
            out += [flag, str(v)]
    return tuple(out)


def read_run_file(path: str) -> tuple[dict[str, Any], list[str]]:
    """A TOML file of run options (parsed, never executed): (option values by attribute, suite names)."""
    raw = _read_toml(path)
    # A [slurm] table beside the options is `milestones submit`'s (slurm_from_namespace reads it).
    run = raw.get("run", {k: v for k, v in raw.items() if k != "slurm"})
    if not isinstance(run, dict):
        raise UsageError(f"config file {path}: [run] must be a table")
    values: dict[str, Any] = {}
    suites: list[str] = []
    for k, v in run.items():
        if k not in TOML_KEYS:
            raise UsageError(f"config file {path}: unknown key {k!r}{did_you_mean(k, TOML_KEYS)}")
        if k == "suites":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise UsageError(f"config file {path}: 'suites' must be a list of strings")
            suites = list(v)
            continue
        o = TOML_KEYS[k]
        try:
            values[o.attr] = o.check(v)
        except Invalid as e:
            raise UsageError(e.message(f"config file {path}: {k!r}", v)) from None
    return values, suites


def from_namespace(ns: argparse.Namespace) -> tuple[Any, list[str]]:
    """RunOptions from `milestones run` arguments: the run file's values, overridden by the flags given."""
    values, suites = read_run_file(ns.config) if getattr(ns, "config", None) else ({}, [])
    for o in OPTIONS:
        v = getattr(ns, o.attr, None)
        if v is None or (o.action == "store_true" and v is False):  # a flag can only turn a setting on
            continue
        if o.action == "append":
            values[o.attr] = {**values.get(o.attr, {}), **dict(v)}
        else:
            values[o.attr] = v
    return RunOptions(**values, torchrun_args=torchrun_args(ns)), (list(getattr(ns, "names", []) or []) or suites)


# ------------------------------------------------------------------------- Slurm (`milestones submit`)
def machine_map(v: Any) -> dict[str, str]:
    """TYPE=VALUE,TYPE=VALUE (a flag) or a TOML table: a partition or constraint per machine type."""
    if isinstance(v, str):
        pairs = [p.strip() for p in v.split(",") if p.strip()]
        if not pairs or not all("=" in p and p.split("=", 1)[0].strip() and p.split("=", 1)[1].strip()
                                for p in pairs):
            raise Invalid("TYPE=NAME pairs, e.g. a100=gpu-a100,h100=gpu-h100")
        v = {p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip() for p in pairs}
    return string_table(v)


def env_by_machine(v: Any) -> dict[str, dict[str, str]]:
    if not isinstance(v, Mapping) or not all(isinstance(t, Mapping) for t in v.values()):
        raise Invalid("a table per machine type of NAME = \"VALUE\" strings")
    return {str(t): string_table(e) for t, e in v.items()}


def non_negative_int(v: Any) -> int:
    return _int(v, minimum=0)


# A job runs the cases of one machine type that fit its time limit; a [slurm] table of the run file
# holds the same keys.
SLURM_OPTIONS: tuple[Option, ...] = (
    Option("partition", "--slurm-partition", machine_map, {}, "the partition of each machine type, e.g. "
           "a100=gpu-a100,h100=gpu-h100 (one job per machine type and case group)", "TYPE=PART,...", "partition"),
    Option("constraint", "--slurm-constraint", machine_map, {}, "a node feature (--constraint) per machine type, "
           "e.g. a100=a100,h100=h100", "TYPE=FEATURE,...", "constraint"),
    Option("time_min", "--slurm-time", positive_int, 60, "time limit of each job in minutes; cases are grouped to "
           "fit it (default 60)", "MIN", "time"),
    Option("gpus", "--slurm-gpus", non_negative_int, None, "GPUs per job (default: --nproc, at least 1; 0 with "
           "--device cpu)", "N", "gpus"),
    Option("cpus", "--slurm-cpus", positive_int, None, "CPUs per job (default: the cluster's default)", "N", "cpus"),
    Option("account", "--slurm-account", text, None, "the Slurm account to charge", "NAME", "account"),
    Option("qos", "--slurm-qos", text, None, "the Slurm quality of service", "NAME", "qos"),
    Option("max_requeue", "--slurm-max-requeue", non_negative_int, 3, "times a job that reached its time limit "
           "with resumable cases left is requeued (default 3)", "N", "max_requeue"),
    Option("signal_s", "--slurm-signal", positive_int, 120, "seconds before the time limit when a job stops its "
           "case and records it (default 120)", "S", "signal"),
    Option("env", "", env_by_machine, {}, "environment variables per machine type (run file only)",
           toml_key="env"),
)
SLURM_BY_ATTR = {o.attr: o for o in SLURM_OPTIONS}


def add_slurm_flags(parser: argparse.ArgumentParser) -> None:
    for o in SLURM_OPTIONS:
        if not o.flag:
            continue
        kw: dict[str, Any] = {"help": o.help, "dest": "slurm_" + o.attr, "metavar": o.metavar}
        if o.check in (positive_int, non_negative_int):
            kw.update(type=cli_number(int))
        parser.add_argument(o.flag, **kw)


def slurm_from_namespace(ns: argparse.Namespace) -> dict[str, Any]:
    """Slurm settings (attribute -> checked value): the run file's [slurm] table, overridden by flags."""
    raw: dict[str, Any] = {}
    if getattr(ns, "config", None):
        raw = _read_toml(ns.config).get("slurm", {})
        if not isinstance(raw, dict):
            raise UsageError(f"config file {ns.config}: [slurm] must be a table")
    values = {o.attr: (dict(o.default) if isinstance(o.default, dict) else o.default) for o in SLURM_OPTIONS}
    by_key = {o.toml_key: o for o in SLURM_OPTIONS}
    for k, v in raw.items():
        if k not in by_key:
            raise UsageError(f"config file {ns.config}: unknown key {k!r} in [slurm]{did_you_mean(k, by_key)}")
        try:
            values[by_key[k].attr] = by_key[k].check(v)
        except Invalid as e:
            raise UsageError(e.message(f"config file {ns.config}: [slurm] {k!r}", v)) from None
    for o in SLURM_OPTIONS:
        v = getattr(ns, "slurm_" + o.attr, None)
        if v is None or not o.flag:
            continue
        try:
            values[o.attr] = o.check(v)
        except Invalid as e:
            raise UsageError(e.message(o.flag, v)) from None
    return values


def _read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read config file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None
