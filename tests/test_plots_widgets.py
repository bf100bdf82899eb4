"""Figures carry titles and labels; widgets' render functions show what they promise."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from utils import plots
from utils.data import SymbolTask
from utils.rnn import BottleneckSeq2Seq
from utils.training import History
from utils.widgets import highlight_errors, prediction_explorer


def test_accuracy_plot_is_labelled():
    results = {"a": {4: {"token": 1.0, "exact": 1.0}, 8: {"token": 0.5, "exact": 0.1}}}
    ax = plots.plot_accuracy_by_length(results, title="T")
    assert ax.get_title() == "T" and "length" in ax.get_xlabel() and "%" in ax.get_ylabel()
    assert list(ax.lines[0].get_ydata()) == [100.0, 50.0]
    assert list(ax.get_xticks()) == [4, 8]
    plt.close("all")


def test_loss_plot_and_heatmap_show_tokens():
    ax = plots.plot_losses({"run": History(losses=[3.0, 2.0, 1.0])})
    assert ax.get_yscale() == "log" and ax.get_title()
    ax = plots.plot_attention(torch.rand(2, 3), ["a", " ", "c"], ["x", "y"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "␣", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
    plt.close("all")


def test_palette_is_okabe_ito():
    assert plots.PALETTE[:3] == ["#0072B2", "#D55E00", "#009E73"]


def test_highlight_errors_marks_wrong_and_missing_tokens():
    html = highlight_errors(list("abd"), list("abcd"))
    assert html.count("underline") == 2  # 'd' in the wrong place, and a missing token
    assert "∅" in html


def test_prediction_explorer_render_counts_errors():
    task = SymbolTask("reverse", min_len=2, max_len=6)
    torch.manual_seed(0)
    model = BottleneckSeq2Seq(len(task.vocab), 8, 16)
    widget, render = prediction_explorer(model, task, [2, 4, 6], n_examples=3)
    html, errors = render(6, 1)
    assert "input" in html and "target" in html and "positions wrong" in html
    assert 0 <= errors <= 6 + 1 + 3  # at most every target position, plus the extra tokens (max_len = length + 3)
    assert len(widget.children) >= 2  # two sliders and the output
