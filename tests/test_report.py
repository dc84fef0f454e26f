"""The report: self-contained HTML (checked in a real headless Chromium) and Markdown, on fixture records.

The browser test needs Debian's chromium (`apt-get install -y chromium`); without it the test FAILS
with that instruction: a report nobody rendered is not a checked report.
"""

import dataclasses
import html as htmlmod
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from milestones.harness import baselines, compare, html, report
from milestones.harness.cli import main

F = Path(__file__).parent / "fixtures" / "records"
SUBSETS = [str(F / s) for s in ("quality", "claims", "regress/new", "torch", "hostile", "history")]


def recs(*parts):
    return [x.record for x in compare.load([F.joinpath(*parts)])]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "report.html"
    assert main(["report", *SUBSETS, "--base", str(F / "regress" / "base"), "--out", str(out)]) == 0
    return out


class Collect(HTMLParser):
    """Tags, text, image attributes and the text of each table (by its header row)."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.srcs, self.hrefs, self.imgs, self.captions = [], [], [], [], [], []
        self.tables: list[dict] = []
        self._cell = None
        self._in_caption = False
        self.h: list[tuple[str, str]] = []
        self._h = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "src" in a:
            self.srcs.append(a["src"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        if tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        if tag in ("td", "th"):
            self._cell = [tag, ""]
        if tag == "figcaption":
            self._in_caption = True
            self.captions.append("")
        if tag in ("h2", "h3"):
            self._h = [tag, ""]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            t = self.tables[-1]
            (t["head"] if self._cell[0] == "th" else t["rows"][-1]).append(self._cell[1])
            self._cell = None
        if tag == "figcaption":
            self._in_caption = False
        if tag in ("h2", "h3") and self._h:
            self.h.append(tuple(self._h))
            self._h = None
        if tag == "table" and self.tables:
            self.tables[-1]["rows"] = [r for r in self.tables[-1]["rows"] if r]

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell[1] += data
        if self._in_caption:
            self.captions[-1] += data
        if self._h is not None:
            self._h[1] += data

    def table(self, first_column: str) -> dict:
        return next(t for t in self.tables if t["head"] and t["head"][0] == first_column
                    and (first_column != "suite" or "figure" in t["head"]))


def parse(text: str) -> Collect:
    p = Collect()
    p.feed(text)
    return p


@pytest.mark.slow
def test_html_is_self_contained_and_escaped(report_html):
    text = report_html.read_text()
    p = parse(text)
    assert "script" not in p.tags  # neither ours nor the hostile record's
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)
    # Links only within the page (the contents line), to sections that exist.
    ids = set(re.findall(r'<section id="([^"]+)"', text))
    assert p.hrefs and all(h.startswith("#") and h[1:] in ids for h in p.hrefs)
    assert not re.search(r"https?://", text)
    body = "".join(p.text)
    # The hostile strings arrive as text, exactly as recorded.
    assert "evil<script>alert(1)" in body
    assert "<script>alert('err')</script> & <b>RuntimeError</b>" in body
    assert htmlmod.escape("<script>alert('err')</script>") in text
    h2 = [t for tag, t in p.h if tag == "h2"]
    for title in ("Summary", "Against the paper", "Regressions", "Kernel diffs", "GPU and library versions",
                  "History", "Environment of each run"):
        assert title in h2, title
    # Claims first: right after the short summary, before any figure of the paper.
    assert h2[0] == "Summary" and h2[1].startswith("Claims")


@pytest.mark.slow
def test_claims_table_and_headline(report_html):
    p = parse(report_html.read_text())
    t = p.table("paper")
    assert t["head"] == report.CLAIM_COLUMNS
    by = {r[-1]: r for r in t["rows"]}
    deg = by["milestones run resnet-degradation --kind quality --scale proxy"]
    col = {name: i for i, name in enumerate(report.CLAIM_COLUMNS)}
    assert deg[0] == "He et al. 2015, Fig. 6, Sec. 4.2" and deg[col["held"]] == "3/3" and "degradation problem" in deg[1]
    assert deg[col["strength"]] == "as stated"
    relu = by["milestones run alexnet-relu-vs-tanh --kind quality --scale proxy"]
    assert relu[col["held"]] == "2/3 (analogue)" and relu[col["per seed"]] == "0:yes 1:no 2:yes"
    assert relu[col["strength"]] == "weaker analogue (tests ReLU 2x faster on digits, not six times)"
    # A record with only the claim_held metric still counts, cited with its suite's paper; it does not say how
    # strong its rule is, so it never reads as held as stated.
    gan = by["milestones run gan-digits --kind quality --scale proxy"]
    assert gan[col["held"]] == "2/2 (analogue)" and gan[0].startswith("Generative Adversarial Nets")
    assert gan[col["strength"]].startswith("strength not recorded")
    body = "".join(p.text)
    assert "Paper claims: 1 claim held as stated, 2 weaker analogues held, 1 held on some seeds (4 checked)." in body
    # Each claim figure is captioned with the claim and its outcome.
    assert any(c.startswith("Fig. 6: deeper plain net trains worse, residual fixes it: held 3/3 seeds (as stated)")
               for c in p.captions)


def test_paper_table_one_row_per_figure_by_category(tmp_path):
    # resnet50's params and MACs are measured in both regress runs (smoke) and the quality run (paper).
    out = tmp_path / "r.html"
    assert main(["report", str(F / "regress"), str(F / "quality"), "--no-plots", "--out", str(out)]) == 0
    p = parse(out.read_text())
    h3 = [t for tag, t in p.h if tag == "h3"]
    assert any(t.startswith("Results:") for t in h3) and any(t.startswith("Architecture:") for t in h3)
    arch = [t for t in p.tables if t["head"][:2] == ["suite", "figure"]]
    rows = [r for t in arch for r in t["rows"]]
    params = [r for r in rows if r[1] == "resnet50: params"]
    assert len(params) == 1, params                      # aggregated over 3 runs and 2 scales
    assert params[0][3] == "25,557,032" and params[0][4] == "= paper" and params[0][5] == "3 (3 runs)"
    assert params[0][6] == "exact match"
    body = "".join(p.text)
    assert "results: 3 not measured, 1 reproduced, 1 not comparable, 1 not reproduced" in body
    assert "architecture checks: 1 matches, 1 exact match" in body
    assert "90 reproduced" not in body and "6.11008e+07" not in body


def test_configuration_echoes_are_not_reproductions():
    items = baselines.load()
    cats = {b.metric: b.category for b in items}
    assert cats["hparam.lr"] == "configuration" and cats["default.eps.torch"] == "configuration"
    assert cats["params"] == "architecture" and cats["macs"] == "architecture" and cats["bleu"] == "result"
    b = next(b for b in items if b.metric == "hparam.lr")
    rec = recs("quality")[0]
    fake = dataclasses.replace(rec, case=dataclasses.replace(rec.case, suite=b.suite, config=b.configs[0],
                                                             kind=b.kind, scale="smoke"),
                               metrics={b.metric: report_metric(b.metric, b.value)})
    (fig,) = report.aggregate_paper(compare.compare_with_paper([fake], [b]))
    assert fig.verdict == "reproduced" and fig.shown_verdict == "exact match"
    assert report.paper_counts_line([fig]) == "configuration checks: 1 exact match (1 figures)"


def report_metric(name, value):
    from milestones.harness.records import Metric

    return Metric.single(name, "value", True, value)


def test_category_override_and_bad_category(tmp_path):
    src = (Path(baselines.default_folder()) / "dcgan.toml").read_text()
    good = src.replace('id = "dcgan-batch-size"', 'id = "dcgan-batch-size"\ncategory = "result"', 1)
    (tmp_path / "dcgan.toml").write_text(good)
    (b,) = [b for b in baselines.load(tmp_path) if b.id == "dcgan-batch-size"]
    assert b.category == "result"
    (tmp_path / "dcgan.toml").write_text(src.replace('id = "dcgan-batch-size"',
                                                     'id = "dcgan-batch-size"\ncategory = "results"', 1))
    _, errors = baselines.check([tmp_path / "dcgan.toml"])
    assert errors and "unknown category 'results'" in errors[0] and "did you mean 'result'" in errors[0]


def test_synthetic_records_are_said_synthetic(report_html):
    text = report_html.read_text()
    assert "<title>milestones report (synthetic records)</title>" in text
    assert 'class="synthetic">SYNTHETIC: 32 of 32 records are marked synthetic' in text
    assert all(r.info.get("synthetic") is True for r in recs())


def test_previous_run_wording_and_threads():
    one = recs("claims")
    secs = html.build(one, [], plots=False)
    text = " ".join(b.text for s in secs for b in s.blocks)
    assert "One run in these results" in text and "Only one run per machine" not in text
    secs = html.build(recs("gpus"), [], plots=False)
    text = " ".join(b.text for s in secs for b in s.blocks)
    assert "is the only run on machine" in text
    # The worker records the threads a case ran with; the table shows those, not the parent's default.
    r = one[0]
    ran = [dataclasses.replace(x, env={**x.env, "threads": 2}, info={**x.info, "threads": 1}) for x in one]
    env = next(s for s in html.build(ran, [], plots=False) if s.title.startswith("Environment"))
    row = env.blocks[0].rows[0]
    assert row[env.blocks[0].columns.index("threads")] == "1" and r.env["threads"] == 1


def test_claims_only_without_claims_is_bad_input(tmp_path, capsys):
    assert main(["report", str(F / "gpus"), "--claims-only", "--out", str(tmp_path / "c.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no record in these results states a paper claim" in err
    assert "milestones run resnet-degradation --kind quality --scale proxy" in err
    assert not (tmp_path / "c.html").exists()
    assert main(["report", str(F / "claims"), "--claims-only", "--no-plots", "--out", str(tmp_path / "c.md")]) == 0
    md = (tmp_path / "c.md").read_text()
    assert "## Claims" in md and "## Against the paper" not in md


@pytest.mark.slow
def test_markdown_report_writes_plots_with_captions(tmp_path):
    out = tmp_path / "r.md"
    assert main(["report", str(F / "quality"), str(F / "claims"), str(F / "hostile"), "--out", str(out)]) == 0
    md = out.read_text()
    assert "## Against the paper" in md and "| resnet | cifar-resnet110-train: test_error | paper | 6.61 ± 0.16 % |" in md
    # Backslash escapes, not HTML entities: the raw Markdown reads as written and no tag gets through.
    assert "&lt;" not in md and "&gt;" not in md and "\\<script>alert('err')\\</script>" in md
    assert re.search(r"(?<!\\)<script", md) is None
    imgs = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)\n\n\*([^*]+)\*", md)
    assert len(imgs) >= 3 and all(alt and cap for alt, _, cap in imgs)
    assert all((tmp_path / i).read_bytes().startswith(b"\x89PNG") for _, i, _ in imgs)


@pytest.mark.slow
def test_report_bad_input(tmp_path, capsys):
    assert main(["report", str(F / "quality"), "--out", str(tmp_path / "r.pdf")]) == 2
    assert "(-o/--output) must end in .html or .md" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no result records" in capsys.readouterr().err


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Debian's chromium is needed to check the HTML report: apt-get install -y chromium")
    return exe


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report_html, tmp_path):
    """The reproduction-report fixture test: what a browser builds from the file, not the file's text."""
    exe = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = report_html.resolve().as_uri()
    dom = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    p = parse(dom.stdout)
    # The browser parsed the escaped text as text: no element came out of the hostile record.
    assert "script" not in p.tags and "b" not in p.tags
    assert "evil<script>alert(1)" in "".join(p.text)
    # The claims table, as the browser laid it out.
    claims = p.table("paper")
    assert claims["head"] == report.CLAIM_COLUMNS and len(claims["rows"]) == 4
    held = report.CLAIM_COLUMNS.index("held")
    assert sorted(r[held] for r in claims["rows"]) == ["2/2 (analogue)", "2/3 (analogue)", "3/3", "3/3 (analogue)"]
    # The aggregated paper table: one row per (figure, config), pooled runs counted.
    paper = [r for t in p.tables if t["head"][:2] == ["suite", "figure"] for r in t["rows"]]
    keys = [(r[1], r[2]) for r in paper]
    assert len(keys) == len(set(keys)) and ("resnet50: params", "paper, smoke") in keys
    # Every image has alt text and sits in a figure with a caption.
    assert len(p.imgs) >= 6 and all(i.get("alt", "").strip() for i in p.imgs)
    assert p.tags.count("figure") == len(p.imgs) == len(p.captions) and all(c.strip() for c in p.captions)
    shot = tmp_path / "shot.png"
    r = subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
