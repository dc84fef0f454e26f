"""nox sessions. `nox -s tests` runs the same command as the README and .ci/run."""

import nox

nox.options.sessions = ["tests"]
TORCH_CPU = "torch==2.13.0"


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The test suite, in the current environment (CI installs it first, per the README)."""
    session.run("python", "-m", "pytest", *session.posargs)
