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
