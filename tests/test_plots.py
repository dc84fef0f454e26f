"""Single figures from fixture records: every kind renders to PNG and SVG and draws what it should."""

import dataclasses
from pathlib import Path

import pytest

from milestones.harness import baselines, compare, history, plots, report
from milestones.harness.cli import main
from milestones.harness.errors import RecordError, UsageError

F = Path(__file__).parent / "fixtures" / "records"


def recs(*parts):
    return [x.record for x in compare.load([F.joinpath(*parts)])]


def degradation():
    return next(r for r in recs("claims") if r.case.config == "resnet-degradation")


def test_history_plot_marks_the_step_and_labels_runs_apart():
    (h,) = history.histories(recs("history"), metrics=["train.step_time"])
    fig = plots.history(h)
    ax = fig.axes[0]
    vlines = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in vlines] == [6.5]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(set(labels)) == len(labels) == 12            # not twelve copies of one date
    assert plots.to_bytes(fig, "svg").lstrip().startswith(b"<?xml")


def test_no_axis_offset_on_tiny_spreads():
    (h,) = history.histories(recs("history"), metrics=["train.step_time"])
    # Values 1e-8 apart around 1: matplotlib's default would print "+1" and "1e-8" offsets.
    vals = tuple(1.0 + i * 1e-9 for i in range(len(h.medians)))
    flat = dataclasses.replace(h, medians=vals, p10=vals, p90=vals, levels=vals, steps=())
    fig = plots.history(flat)
    fig.canvas.draw()
    assert fig.axes[0].yaxis.get_offset_text().get_text() == ""


def test_curves_are_one_line_per_model_with_a_seed_band():
    fig = plots.curves(degradation())
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names == ["plain8 (n=3)", "plain20 (n=3)", "resnet8 (n=3)", "resnet20 (n=3)"]
    assert len(ax.collections) == 4                      # a min-max band per model
    assert ax.get_ylabel() == "train_error (log scale)"   # the evaluated metric, not the raw loss
    assert "mean over 3 seeds" in ax.get_title()
    colors = [line.get_color() for line in ax.get_lines()]
    assert len(set(colors)) == len(colors)
    mean = next(line for line in ax.get_lines() if line.get_label().startswith("plain20")).get_ydata()
    per_seed = [s["train_error"] for k, s in degradation().artifacts["curves"].items() if k.startswith("plain20.")]
    assert mean[-1] == pytest.approx(sum(s[-1] for s in per_seed) / 3)
    loss = plots.curves(degradation(), "loss").axes[0]
    assert loss.get_ylabel().startswith("loss (running mean)")
    with pytest.raises(UsageError, match="has no 'bleu' curve .it has: train_error, loss"):
        plots.curves(degradation(), "bleu")


def test_group_bars_are_ratios_with_intervals_on_a_linear_axis(tmp_path):
    rows, groups = compare.compare_by(recs("gpus"), "gpu")
    fig = plots.groups_bar(rows, groups, "train.throughput", "gpu")
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(groups)  # two cases, one bar per group
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    assert len([c for c in ax.containers if getattr(c, "has_xerr", False)]) == len(groups)
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    assert widths[:2] == [1.0, 1.0]                        # the reference is 1 in each case
    assert "train.throughput" in ax.get_title() and "A100" in "".join(t.get_text() for t in fig.legends[0].get_texts())
    texts = [t.get_text() for t in ax.texts]
    assert any(t.endswith("images/s") for t in texts)      # absolute medians written beside the bars
    assert plots.save(fig, tmp_path / "by.png").read_bytes().startswith(b"\x89PNG")


def test_paper_chart_is_one_compact_panel():
    figs = report.aggregate_paper(compare.compare_with_paper(recs("quality") + recs("regress"), baselines.load()))
    fig = plots.quality_vs_paper(figs)
    assert len(fig.axes) == 1
    measured = [f for f in figs if f.ours is not None]
    assert len(fig.axes[0].get_yticks()) == len(measured)
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 1 < hi and hi - 1 < 0.5                   # the far-off proxy figure does not squash the rest


def test_kernel_plot(tmp_path):
    base = next(r for r in recs("regress", "base") if r.case.config == "resnet50-smoke")
    new = next(r for r in recs("regress", "new") if r.case.config == "resnet50-smoke")
    fig = plots.kernels(base.artifacts["train.kernels"], "k", new.artifacts["train.kernels"])
    assert len(fig.axes[0].patches) == 10
    assert plots.save(fig, tmp_path / "k.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_bad_plot_input():
    q = degradation()
    broken = dataclasses.replace(q, artifacts={"curves": {"s": {"step": [1, 2], "loss": [1.0]}}})
    with pytest.raises(RecordError, match="differ in length"):
        plots.curves(broken)
    with pytest.raises(UsageError, match="png or .svg"):
        plots.save(plots.curves(q), "x.jpg")


@pytest.mark.parametrize("args", [
    ["by", str(F / "torch"), "--by", "torch"],
    ["history", str(F / "history")],
    ["paper", str(F / "quality")],
    ["curves", str(F / "quality"), "--config", "cifar-resnet110-train"],
    ["curves", str(F / "claims"), "--metric", "loss"],
    ["kernels", str(F / "regress" / "new"), "--base", str(F / "regress" / "base"), "--config", "resnet50-smoke"],
])
def test_plot_command(tmp_path, capsys, args):
    out = tmp_path / "fig.png"
    assert main(["plot", *args, "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_plot_command_says_what_it_chose(tmp_path, capsys):
    assert main(["plot", "by", str(F / "gpus"), "--metric", "train.*", "--out", str(tmp_path / "b.png")]) == 0
    err = capsys.readouterr().err
    assert "drawing train.energy_per_item; also: train.flops, " in err and "(pick with --metric)" in err


@pytest.mark.parametrize("args, msg", [
    (["history", str(F / "gpus")], "history needs one case with '*.step_time' measured in 3 or more runs"),
    (["curves", str(F / "gpus")], "has what `plot curves` needs"),
    (["by", str(F / "gpus"), "--metric", "nope.*"], "no record has a metric matching 'nope.*'"),
    (["history", str(F / "history"), "--metric", "train.step_tme"], "did you mean 'train.step_time'"),
])
def test_plot_command_bad_input(tmp_path, capsys, args, msg):
    assert main(["plot", *args, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_curves_of_the_suite_api_form():
    from milestones.harness.suite_api import curve

    r = degradation()
    cv = {f"{m}.seed{s}": curve(m, s, [1, 2, 3], x="episode", train_error=[0.5, 0.2 + s / 100, 0.1 * k],
                                loss=[2.0, 1.0, 0.5])
          for k, m in enumerate(("plain8", "plain20"), start=1) for s in (0, 1)}
    ax = plots.curves(dataclasses.replace(r, artifacts={"curves": cv})).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain8 (n=2)", "plain20 (n=2)"]
    assert ax.get_xlabel() == "episode" and ax.get_ylabel().startswith("train_error")
    plain20 = next(line for line in ax.get_lines() if line.get_label().startswith("plain20"))
    assert list(plain20.get_ydata()) == pytest.approx([0.5, 0.205, 0.2])
