"""The shape of the code, for the notes: the N longest functions under harness/ and suites/, and the median
function length. Usage: python scripts/code_shape.py [ROOT] [--top 10]"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path


def functions(root: Path) -> list[tuple[int, str]]:
    out = []
    for folder in ("harness", "suites"):
        for f in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.append((node.end_lineno - node.lineno + 1, f"{f.relative_to(root)}:{node.lineno} {node.name}"))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root", nargs="?", default=".")
    p.add_argument("--top", type=int, default=10)
    a = p.parse_args()
    fs = functions(Path(a.root))
    print(f"{len(fs)} functions, median {statistics.median(n for n, _ in fs):g} lines")
    for n, where in sorted(fs, reverse=True)[: a.top]:
        print(f"{n:5d}  {where}")


if __name__ == "__main__":
    main()
