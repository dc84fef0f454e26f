"""Errors that the CLI turns into one clear line and exit code 2 (bad input, never a traceback)."""


class MilestonesError(Exception):
    """Base class: the message is shown to the user as one line."""

    exit_code = 2


class UsageError(MilestonesError):
    """Bad command-line input: unknown names, bad options, unusable paths."""


class RecordError(MilestonesError):
    """A result record that cannot be read: malformed JSON, missing fields, newer schema."""


class BaselineError(MilestonesError):
    """A baselines file that is malformed or refers to unknown suites or metrics."""
