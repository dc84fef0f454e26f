"""nox sessions. `nox -s tests` runs the same command as the README and .ci/run.

- tests: the test suite in the current environment.
- lint: ruff over the project.
- smoke: the main job at smoke scale (`milestones run`, then a report), in the current environment.
- bench-<torch>: the speed cases and the kernel microbenchmarks under one torch version, in a venv
  that sees the system site-packages (so only torch differs); records go to results/bench.
  Then `milestones compare results/bench --by torch` is the library-version comparison.
- report: the HTML report of results/.
"""

import os
import shutil
import sys

import nox

nox.options.sessions = ["tests"]
TORCH_CPU = "torch==2.13.0"
TORCH_VERSIONS = ["2.13.0", "2.14.1"]  # both install from this machine's local wheels
BENCH_OUT = os.environ.get("MILESTONES_BENCH_OUT", "results/bench")


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The test suite, in the current environment (CI installs it first, per the README)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff: the rules are in pyproject.toml."""
    session.run("ruff", "check", *(session.posargs or ["."]))


@nox.session(python=False)
def smoke(session: nox.Session) -> None:
    """The nightly job at smoke scale: every smoke fidelity and speed case, then the report."""
    out = session.posargs[0] if session.posargs else "results/smoke"
    session.run("python", "-m", "milestones.harness", "run", "--scale", "smoke", "--out", out)
    session.run("python", "-m", "milestones.harness", "report", out, "--out", os.path.join(out, "report.html"))


@nox.session(venv_params=["--system-site-packages"])
@nox.parametrize("torch", TORCH_VERSIONS)
def bench(session: nox.Session, torch: str) -> None:
    """Speed cases + kernel microbenchmarks under torch==TORCH; records carry the torch version."""
    # The venv sees the system packages (numpy, pandas, pytest-benchmark, ...); installing torch into
    # it shadows the system torch, so the torch version is the only difference between sessions.
    session.install(f"torch=={torch}")
    session.run("python", "-c", f"import torch, sys; v = torch.__version__.split('+')[0]; "
                f"sys.exit(0 if v == '{torch}' else f'expected torch {torch}, got ' + v)")
    env = {"PYTHONPATH": os.getcwd()}
    kernels = os.path.join(session.create_tmp(), f"kernels-torch{torch}.json")
    session.run("python", "-m", "milestones.harness", "run", "--kind", "speed", "--scale", "smoke", "--out", BENCH_OUT,
                *session.posargs, env=env, success_codes=[0, 1])  # 1: a case failed; its record says why
    session.run("python", "-m", "pytest", "tests/bench_kernels", "-q", "-p", "no:cacheprovider", "--benchmark-only", "--benchmark-max-time=0.25",
                f"--benchmark-json={kernels}", "--benchmark-save-data", env=env)
    session.run("python", "-m", "milestones.harness", "import", "pytest-benchmark", kernels, "--out", BENCH_OUT, env=env)


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """The self-contained HTML report of a results folder (default results/)."""
    src = session.posargs[0] if session.posargs else "results"
    session.run("python", "-m", "milestones.harness", "report", src, "--out", os.path.join(src, "report.html"))


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """The GPU acceptance check (scripts/gpu_check.sh): needs one NVIDIA GPU; PASS/FAIL summary at the end."""
    session.run("bash", "scripts/gpu_check.sh", *(session.posargs or ["results/gpu-check"]))


# ------------------------------------------------------------------------------------ mutation testing
# Each core module with the tests that exercise it: a mutant is run against those only (a full suite
# per mutant would take hours on a 2-core machine). docs/mutation-testing.md holds the last run's figures.
MUTATION_TARGETS = {
    "stats": ("harness/stats.py", "tests/test_stats.py tests/test_mutation_kills.py"),
    "compare": ("harness/compare.py", "tests/test_compare.py tests/test_unreadable_records.py "
                                      "tests/test_mutation_kills.py"),
    "store": ("harness/store.py", "tests/test_store.py tests/test_record_safety.py tests/test_privacy.py "
                                  "tests/test_mutation_kills_store.py -k 'not a_run_with'"),
    "records": ("harness/records.py", "tests/test_store.py tests/test_record_safety.py "
                                      "tests/test_mutation_kills_store.py tests/test_measure.py::test_t_table_matches_scipy "
                                      "tests/test_measure.py::test_stats_match_numpy_on_known_distributions "
                                      "tests/test_measure.py::test_seed_interval_covers_known_mean_and_olympic_mean "
                                      "-k 'not a_run_with'"),
    "timing": ("harness/measure/timing.py", "tests/test_mutation_kills_timing.py"),
    "slow_machine": ("harness/slow_machine.py", "tests/test_slow_machine.py -k 'not every_cpu_speed_record'"),
    "runner": ("harness/runner.py", "tests/test_mutation_kills_runner.py tests/test_mutation_kills_runner_more.py"),
    # + the fault tests: budget, Ctrl-C, resume and leftovers (fake case processes, ~7 s)
    "ab": ("harness/ab.py", "tests/test_mutation_kills_ab.py tests/test_mutation_kills_ab_more.py "
                            "tests/test_ab_faults.py tests/test_ab_bursts.py -k 'not real_round'"),
    # The burst protocol's round, ratios and launcher (fake processes, the worker in-process; ~15 s).
    "ab_bursts": ("harness/ab_bursts.py", "tests/test_ab_bursts.py -k 'not real_round'"),
    "history": ("harness/history.py", "tests/test_mutation_kills_history.py"),
}
# One representative replacement per operator instead of cosmic-ray's every-to-every table (which
# gives ~1400 mutants for stats.py alone): + -> -, * -> /, < -> <=, == -> !=, `not x` -> x, ...
MUTATION_EXCLUDE = [
    r"core/ReplaceBinaryOperator_(?!(Add_Sub|Sub_Add|Mul_Div|Div_Mul|Pow_Mul|FloorDiv_Div|Mod_FloorDiv)$)",
    r"core/ReplaceComparisonOperator_(?!(Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is"
    r"|In_NotIn|NotIn_In)$)",
    r"core/ReplaceUnaryOperator_(?!(Delete_Not|USub_UAdd)$)",
]


# MUTATION_EVERY=N keeps every N-th mutant (in source order) and skips the rest: a quick sample.
_SAMPLE = """
import sys
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkResult, WorkerOutcome
db, every = sys.argv[1], int(sys.argv[2])
with use_db(db, WorkDB.Mode.open) as wdb:
    key = lambda w: [(str(m.module_path), tuple(m.start_pos), m.operator_name, m.occurrence) for m in w.mutations]
    for i, item in enumerate(sorted(wdb.pending_work_items, key=key)):
        if i % every:
            wdb.set_result(item.job_id, WorkResult(output="not sampled", worker_outcome=WorkerOutcome.SKIPPED))
"""

_SAME_CHECKOUT = """
import os, sys
import milestones.harness as h
here = os.path.realpath(sys.argv[1])
if not os.path.realpath(h.__file__).startswith(here + os.sep):
    sys.exit(f"this interpreter imports milestones from {os.path.dirname(h.__file__)}, not from {here}: "
             "activate this checkout's environment (pip install -e .) and run nox again")
"""


@nox.session(python=False)
def mutation(session: nox.Session) -> None:
    """cosmic-ray over the core modules (posargs: some of MUTATION_TARGETS' names).

    It mutates the files IN PLACE, one mutant at a time, and restores each: do not edit the tree while
    it runs. Prints killed / survived per module; the session database stays in the session's tmp dir.
    MUTATION_EVERY=N runs every N-th mutant only (a sample, for a busy machine); MUTATION_TIMEOUT=S
    kills a mutant's test run after S seconds (default 120).
    """
    names = session.posargs or list(MUTATION_TARGETS)
    unknown = [n for n in names if n not in MUTATION_TARGETS]
    if unknown:
        session.error(f"unknown module {unknown[0]!r}; choose from {', '.join(MUTATION_TARGETS)}")
    tmp = session.create_tmp()
    # A mutant that loops forever is killed after MUTATION_TIMEOUT s (default 120; a normal test run takes
    # seconds); it counts as killed.
    timeout = float(os.environ.get("MUTATION_TIMEOUT", "120"))
    # cosmic-ray runs the test command through its own PATH (a pyenv shim puts its interpreter first):
    # name this environment's interpreter, the one that has milestones installed. Under a pyenv `nox`
    # shim PATH starts with pyenv's own bin, so the activated virtualenv is asked first.
    venv = os.environ.get("VIRTUAL_ENV")
    venv_python = os.path.join(venv, "bin", "python") if venv else ""
    python = venv_python if os.path.isfile(venv_python) else shutil.which("python") or sys.executable
    # Mutants of this checkout must be what the tests import: another checkout's install (an editable
    # install of a sibling worktree) would let every mutant survive.
    session.run(python, "-c", _SAME_CHECKOUT, os.getcwd(), silent=True)
    cr = [python, "-m", "cosmic_ray.cli"]
    for name in names:
        module, tests = MUTATION_TARGETS[name]
        conf, db = os.path.join(tmp, f"{name}.toml"), os.path.join(tmp, f"{name}.sqlite")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {timeout}\nexcluded-modules = []\n'
                    f'test-command = "env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {python} -m pytest -x -q -p no:cacheprovider '
                    f'{tests}"\n'
                    '[cosmic-ray.distributor]\nname = "local"\n'
                    '[cosmic-ray.filters.operators-filter]\n'
                    f"exclude-operators = [{', '.join(repr(x) for x in MUTATION_EXCLUDE)}]\n")
        if os.path.exists(db):
            os.remove(db)
        session.run(*cr, "init", conf, db)
        session.run(python, "-m", "cosmic_ray.tools.filters.operators_filter", db, conf)
        every = int(os.environ.get("MUTATION_EVERY", "1"))
        if every > 1:
            session.run(python, "-c", _SAMPLE, db, str(every))
        session.run(*cr, "baseline", conf)
        session.run(*cr, "exec", conf, db)
        session.run(python, "-m", "cosmic_ray.tools.report", "--show-pending", db)
        session.run(python, "-m", "cosmic_ray.tools.survival_rate", db)
