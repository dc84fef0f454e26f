"""The report: self-contained HTML (checked in a real headless Chromium) and Markdown, on fixture records.

The browser test needs Debian's chromium (`apt-get install -y chromium`); without it the test FAILS
with that instruction: a report nobody rendered is not a checked report.
"""

import html as htmlmod
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from milestones.harness.cli import main

F = Path(__file__).parent / "fixtures" / "records"
SUBSETS = [str(F / s) for s in ("quality", "regress/new", "torch", "hostile", "history")]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "report.html"
    assert main(["report", *SUBSETS, "--base", str(F / "regress" / "base"), "--out", str(out)]) == 0
    return out


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.srcs = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        for k in ("src", "href"):
            if k in a:
                self.srcs.append(a[k])

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_self_contained_and_escaped(report_html):
    text = report_html.read_text()
    p = Collect()
    p.feed(text)
    assert "script" not in p.tags  # neither ours nor the hostile record's
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)
    assert not re.search(r"https?://", text)
    body = "".join(p.text)
    # The hostile strings arrive as text, exactly as recorded.
    assert "evil<script>alert(1)" in body
    assert "<script>alert('err')</script> & <b>RuntimeError</b>" in body
    assert htmlmod.escape("<script>alert('err')</script>") in text
    for title in ("Summary", "Against the paper", "Regressions", "Kernel diffs", "GPU and library versions",
                  "History", "Environment of each run", "Suite resnet"):
        assert f">{title}</h2>" in text, title


def test_html_content(report_html):
    text = report_html.read_text()
    assert "reproduced" in text and "not reproduced" in text and "record scale proxy, figure needs paper" in text
    assert "Table 6" in text and "arXiv 1512.03385" in text          # cited
    assert "20260317T020000Z-nightly" in text                        # first run of the step
    assert "By torch, reference" in text and "2.14.1 / ref" in text
    assert text.count("<img") >= 4


def test_markdown_report_writes_plots(tmp_path):
    out = tmp_path / "r.md"
    assert main(["report", str(F / "quality"), str(F / "hostile"), "--out", str(out)]) == 0
    md = out.read_text()
    assert "## Against the paper" in md and "| resnet | cifar-resnet110-train | paper | test_error |" in md
    assert "&lt;script&gt;" in md and "<script>" not in md
    imgs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert imgs and all((tmp_path / i).read_bytes().startswith(b"\x89PNG") for i in imgs)


def test_report_bad_input(tmp_path, capsys):
    assert main(["report", str(F / "quality"), "--out", str(tmp_path / "r.pdf")]) == 2
    assert "--out must end in .html or .md" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no result records" in capsys.readouterr().err


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Debian's chromium is needed to check the HTML report: apt-get install -y chromium")
    return exe


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    exe = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = report_html.resolve().as_uri()
    dom = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    p = Collect()
    p.feed(dom.stdout)
    # The browser parsed the escaped text as text: no element came out of the hostile record.
    assert "script" not in p.tags and "b" not in p.tags
    assert p.tags.count("table") >= 5 and p.tags.count("img") >= 4
    assert "evil<script>alert(1)" in "".join(p.text)
    shot = tmp_path / "shot.png"
    r = subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
