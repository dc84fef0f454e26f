"""Single figures from fixture records: every kind renders to PNG and SVG and draws what it should."""

from pathlib import Path

import pytest

from milestones.harness import baselines, compare, history, plots
from milestones.harness.cli import main
from milestones.harness.errors import RecordError, UsageError

F = Path(__file__).parent / "fixtures" / "records"


def recs(*parts):
    return [x.record for x in compare.load([F.joinpath(*parts)])]


def test_history_plot_marks_the_step():
    (h,) = history.histories(recs("history"), metrics=["train.step_time"])
    fig = plots.history(h)
    ax = fig.axes[0]
    vlines = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in vlines] == [6.5]
    assert plots.to_bytes(fig, "svg").lstrip().startswith(b"<?xml")


def test_group_and_paper_and_curve_and_kernel_plots(tmp_path):
    rows, groups = compare.compare_by(recs("gpus"), "gpu")
    fig = plots.groups_bar(rows, groups, "train.throughput", "gpu")
    assert len(fig.axes[0].patches) == 2 * len(groups)  # two cases, one bar per group
    assert plots.save(fig, tmp_path / "by.png").read_bytes().startswith(b"\x89PNG")
    prs = compare.compare_with_paper(recs("quality"), baselines.load())
    fig = plots.quality_vs_paper(prs)
    assert len(fig.axes) == sum(r.ours is not None for r in prs)
    q = next(r for r in recs("quality") if r.artifacts.get("curves") and r.case.scale == "paper")
    fig = plots.curves(q)
    assert len(fig.axes[0].get_lines()) == 3  # one per seed
    base = next(r for r in recs("regress", "base") if r.case.config == "resnet50-smoke")
    new = next(r for r in recs("regress", "new") if r.case.config == "resnet50-smoke")
    fig = plots.kernels(base.artifacts["train.kernels"], "k", new.artifacts["train.kernels"])
    assert len(fig.axes[0].patches) == 10
    assert plots.save(fig, tmp_path / "k.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_bad_plot_input():
    q = next(r for r in recs("quality") if r.artifacts.get("curves"))
    broken = type(q)(**{**q.__dict__, "artifacts": {"curves": {"s": {"step": [1, 2], "loss": [1.0]}}}})
    with pytest.raises(RecordError, match="differ in length"):
        plots.curves(broken)
    with pytest.raises(UsageError, match="png or .svg"):
        plots.save(plots.curves(q), "x.jpg")


@pytest.mark.parametrize("args", [
    ["by", str(F / "torch"), "--by", "torch"],
    ["history", str(F / "history")],
    ["paper", str(F / "quality")],
    ["curves", str(F / "quality"), "--config", "cifar-resnet110"],
    ["kernels", str(F / "regress" / "new"), "--base", str(F / "regress" / "base"), "--config", "resnet50-smoke"],
])
def test_plot_command(tmp_path, capsys, args):
    out = tmp_path / "fig.png"
    assert main(["plot", *args, "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_plot_command_bad_input(tmp_path, capsys):
    assert main(["plot", "history", str(F / "gpus"), "--out", str(tmp_path / "h.png")]) == 2
    assert "3 or more runs" in capsys.readouterr().err
    assert main(["plot", "curves", str(F / "gpus"), "--out", str(tmp_path / "c.png")]) == 2


def test_curves_read_named_series():
    from milestones.harness.suite_api import curve

    q = next(r for r in recs("quality") if r.artifacts.get("curves"))
    cv = {"dqn.seed0": curve("dqn", 0, [10, 20, 30], **{"return": [1.0, 3.0, 2.0]}),
          "plain8.seed0": curve("plain8", 0, [1, 2], loss=[2.0, 1.0], train_error=[0.9, 0.5])}
    fig = plots.curves(type(q)(**{**q.__dict__, "artifacts": {"curves": cv}}))
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[1.0, 3.0, 2.0], [2.0, 1.0]]  # loss preferred
    assert fig.axes[0].get_ylabel() == "loss, return"
    assert plots.curve_series({"step": [1], "value": [2.0]}) == ([1], {"value": [2.0]})  # the older shape
