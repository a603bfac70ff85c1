"""Reporting helpers: atomic writes, metrics.json, figures, progress bars."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest
import torch

from common.report import lesson_output_dir, progress, save_figure, write_metrics
from common.settings import atomic_path


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "checkpoint.json"
    target.write_text("good", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_path(target) as temp_path:
        temp_path.write_text("half wri", encoding="utf-8")
        raise RuntimeError("interrupted mid-write")
    assert target.read_text(encoding="utf-8") == "good"
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.json"]


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as temp_path:
        assert temp_path.parent == target.parent and temp_path != target
        temp_path.write_text("new", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "new"


def test_write_metrics_handles_tensors_and_non_finite_values(tmp_path):
    metrics = {"accuracy": torch.tensor(0.5), "loss_history": [1.0, float("inf")], "name": "x"}
    path = write_metrics(tmp_path, metrics, headline="accuracy")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == {
        "accuracy": 0.5,
        "loss_history": [1.0, "inf"],
        "name": "x",
        "headline": "accuracy",
    }
    with pytest.raises(KeyError, match="headline metric 'missing'"):
        write_metrics(tmp_path, metrics, headline="missing")


def test_save_figure_writes_a_png(tmp_path):
    fig, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "plots" / "line.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums(), "the figure is closed once saved"


def test_lesson_output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_OUT_ROOT", str(tmp_path / "outputs"))
    assert lesson_output_dir("07_cnn") == tmp_path / "outputs" / "07_cnn"
    assert lesson_output_dir("07_cnn", tmp_path / "mine") == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()


def test_progress_is_silent_without_a_terminal(capsys):
    assert list(progress(range(3), desc="epoch 1")) == [0, 1, 2]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_metrics_record_a_stand_in(tmp_path, monkeypatch, capsys):
    from common import data

    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    write_metrics(tmp_path / "real", {"accuracy": 0.9}, headline="accuracy")
    assert "data" not in json.loads(
        (tmp_path / "real" / "metrics.json").read_text(encoding="utf-8")
    )

    data.use_stand_in("MNIST", "is not here", "download it")
    write_metrics(tmp_path / "fake", {"accuracy": 0.9}, headline="accuracy")
    saved = json.loads((tmp_path / "fake" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["data"] == "stand-in" and saved["stand_ins"] == ["MNIST"]
    assert capsys.readouterr().out.count("NOTICE") == 1
