"""Interactive widgets of the lessons (ipywidgets).

Each widget is built around a plain ``render(...)`` function that returns what the widget
shows, so that a checked notebook cell (and the tests) can call it without a browser.
"""
from __future__ import annotations

import html

import ipywidgets as widgets
import torch
from IPython.display import HTML, display

_RIGHT, _WRONG = "#009E73", "#D55E00"  # Okabe-Ito green / vermillion, with a text mark too


def highlight_errors(pred_tokens, target_tokens) -> str:
    """HTML: each predicted token, green when it matches the target at that position, else red and underlined."""
    cells = []
    for i in range(max(len(pred_tokens), len(target_tokens))):
        p = pred_tokens[i] if i < len(pred_tokens) else "∅"
        ok = i < len(target_tokens) and i < len(pred_tokens) and p == target_tokens[i]
        style = f"color:{_RIGHT}" if ok else f"color:{_WRONG};text-decoration:underline;font-weight:bold"
        cells.append(f'<span style="{style}">{html.escape(p)}</span>')
    return " ".join(cells)


def prediction_explorer(model, task, lengths, *, n_examples: int = 20, seed: int = 7):
    """Choose an input length and an example; see input, target and the model's output, errors highlighted.

    Returns ``(widget, render)``; ``render(length, example) -> (html, n_errors)``, where
    ``n_errors`` counts the target positions the output gets wrong plus any extra tokens.
    """
    cache = {}

    def examples(length):
        if length not in cache:
            g = torch.Generator().manual_seed(seed + length)
            batch = task.sample(n_examples, g, length=length)
            device = next(model.parameters()).device
            with torch.no_grad():
                pred = model.generate(batch.src.to(device), batch.src_lengths.to(device), max_len=length + 3).cpu()
            cache[length] = (batch, pred)
        return cache[length]

    def render(length, example=0):
        batch, pred = examples(length)
        src = task.vocab.decode(batch.src[example])
        tgt = task.vocab.decode(batch.tgt[example])
        out = task.vocab.decode(pred[example])
        wrong = sum(1 for i in range(len(tgt)) if i >= len(out) or out[i] != tgt[i])
        extra = max(0, len(out) - len(tgt))
        summary = f"{wrong} of {len(tgt)} positions wrong" + (f", {extra} extra token{'s' if extra != 1 else ''}" if extra else "")
        text = (f"<pre style='font-size:14px;line-height:1.6'>input  : {html.escape(' '.join(src))}\n"
                f"target : {html.escape(' '.join(tgt))}\n"
                f"output : {highlight_errors(out, tgt)}</pre><p>{summary}</p>")
        return text, wrong + extra

    def show(length, example):
        display(HTML(render(length, example)[0]))

    widget = widgets.interactive(
        show,
        length=widgets.SelectionSlider(options=list(lengths), value=list(lengths)[len(lengths) // 2], description="length"),
        example=widgets.IntSlider(min=0, max=n_examples - 1, value=0, description="example"),
    )
    return widget, render
