"""The grading benchmark (benchmarks/grading.py) builds the class it says it builds and writes its table;
the measurement itself is the benchmark's to run, not a test's."""
import nbformat

from benchmarks import grading as bench
from grading.reading import answer_id


def test_the_generated_class_mixes_right_wrong_and_unfinished_answers(tmp_path):
    bench.make_class(tmp_path, 10)
    paths = sorted(tmp_path.glob("learner*/01_lstm_bottleneck.ipynb"))
    assert len(paths) == 10
    notebooks = [nbformat.read(p, as_version=4) for p in paths]
    kinds = [nb.cells[-1].source.split("(")[-1].rstrip(").") for nb in notebooks]
    assert (kinds.count("right"), kinds.count("wrong"), kinds.count("unfinished")) == (4, 3, 3)
    answers = [{answer_id(c): c.source for c in nb.cells if answer_id(c)} for nb in notebooks]
    right = bench._answers()
    assert answers[0] == right and "torch.roll" in answers[2]["01.2"] and "softmax" in answers[2]["01.3"]
    assert "raise NotImplementedError()" in answers[3]["01.4"] and answers[3]["01.1"] == right["01.1"]
    assert len({p.read_text() for p in paths}) == 10  # every notebook different


def test_the_table_says_how_it_was_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "OUT", tmp_path / "grading.md")
    row = {"size": 20, "jobs": 2, "jobs_asked": "default", "sandbox": True, "graded": 20, "wall_s": 60.0,
           "cpu_s_per_submission": 2.5, "submissions_per_hour": 1200, "load_before": 1.0, "load_after": 2.0,
           "machine": "x86_64, 2 cores", "date": "2026-12-04 18:00"}
    bench.write_markdown({"20/default/sandbox": row})
    text = (tmp_path / "grading.md").read_text()
    assert "| 20 | 2 (default) | yes | 20 | 60.0 | 2.5 | 1200 | 1.0 -> 2.0 |" in text
    assert "about 2.5 CPU seconds" in text and "1,400 submissions an hour per core" in text
