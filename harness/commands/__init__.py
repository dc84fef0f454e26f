"""Subcommands beyond list/env/run. Each module here defines `register(subparsers)` which adds its
parser and sets `func=callable(args) -> int`; `milestones.harness.cli` discovers them, so adding a command
never edits the CLI module."""

import argparse


def command(sub, name: str, help: str, description: str, examples: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """One subcommand's parser: its one-line help, a description kept as written, and examples."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_reading_options(p: argparse.ArgumentParser) -> None:
    """What every command that reads records takes: where run ids are looked up, and what an unreadable
    record does (the same flags, with the same meaning, everywhere)."""
    p.add_argument("--results", "--results-root", dest="results_root", default="results",
                   help="where run ids are looked up (default results)")
    p.add_argument("--strict", action="store_true",
                   help="refuse the whole input when one record is unreadable (default: name it, skip it)")
