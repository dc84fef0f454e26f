"""Subcommands beyond list/env/run. Each module here defines `register(subparsers)` which adds its
parser and sets `func=callable(args) -> int`; `milestones.harness.cli` discovers them, so adding a command
never edits the CLI module."""
