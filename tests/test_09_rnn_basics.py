"""Lesson 09: every reference value of CURRICULUM.md §09 (shapes, the recurrence by hand,
hello -> ohlol three ways, GRU/LSTM shapes), printed and returned."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
from conftest import load_lesson, run_lesson_main
from torch import nn

STEM = "09_rnn_basics"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One --quick run: (metrics, printed text, output folder)."""
    tmp_path = tmp_path_factory.mktemp("lesson09")
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", buffer)
        metrics = run_lesson_main(STEM, tmp_path, "--quick")
    return metrics, buffer.getvalue(), tmp_path / STEM


def test_rnn_shapes(quick_run):
    metrics, text, _ = quick_run
    assert metrics["rnncell_hidden_shape"] == [1, 2]
    assert metrics["rnn_output_shape"] == [3, 1, 2]
    assert metrics["rnn_hidden_shape"] == [1, 1, 2]
    assert metrics["batch_first_output_shape"] == [1, 3, 2]
    assert metrics["two_layer_hidden_shape"] == [2, 1, 2]
    assert "input [1, 4] -> hidden [1, 2]" in text
    assert "output [3, 1, 2]" in text and "hidden [1, 1, 2]" in text


def test_recurrence_by_hand_equals_layer(quick_run):
    metrics, text, _ = quick_run
    assert metrics["recurrence_matches_layer"] is True
    assert "torch.allclose(by hand, nn.RNN output): True" in text


def test_all_three_variants_learn_ohlol(quick_run):
    metrics, text, _ = quick_run
    assert metrics["predictions"] == {"rnncell": "ohlol", "rnn": "ohlol", "embedding": "ohlol"}
    assert metrics["all_ohlol"] is True
    # each variant prints its prediction every epoch (15 epochs x 3 variants)
    assert text.count("Predicted string:") == 45
    for key in ("rnncell", "rnn", "embedding"):
        history = metrics[f"{key}_loss_history"]
        assert len(history) == 15 and history[-1] < history[0] / 5


def test_variants_are_robust_to_the_seed(tmp_path):
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--seed", "7")
    assert metrics["all_ohlol"] is True


def test_every_reference_value_is_printed_and_matches(quick_run):
    metrics, text, _ = quick_run
    assert metrics["reference_values"] == "6/6" and metrics["all_match"] is True
    assert metrics["values"]["nn.RNN output (seq, batch, hidden)"] == [3, 1, 2]
    assert "MISMATCH" not in text
    assert text.count("(reference ohlol) ok") == 3


def test_gru_lstm_shapes(quick_run):
    metrics, _, _ = quick_run
    # 2 layers x 2 directions = 4 stacked states; outputs concatenate both directions
    assert metrics["gru_output_shape"] == [3, 1, 4]
    assert metrics["gru_hidden_shape"] == [4, 1, 2]
    assert metrics["lstm_output_shape"] == [3, 1, 4]
    assert metrics["lstm_hidden_shape"] == [4, 1, 2]
    assert metrics["lstm_cell_shape"] == [4, 1, 2]


def test_outputs_written(quick_run):
    metrics, _, out = quick_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["all_ohlol"] is True and saved["predictions"] == metrics["predictions"]
    assert (out / "hello_ohlol_loss.png").stat().st_size > 0


def test_models_and_encoding(lesson):
    assert lesson.encode("hello").tolist() == [1, 0, 2, 2, 3]
    assert lesson.decode([3, 1, 2, 3, 2]) == "ohlol"
    one_hot = nn.functional.one_hot(lesson.encode("hello"), 4).float().view(-1, 1, 4)
    assert lesson.SeqModel()(one_hot).shape == (5, 4)
    assert lesson.EmbeddingModel()(lesson.encode("hello").view(1, -1)).shape == (5, 4)
    scores, hidden = lesson.CellModel()(one_hot[0], torch.zeros(1, 8))
    assert scores.shape == (1, 4) and hidden.shape == (1, 8)


def test_bad_epochs_is_a_one_line_error(lesson, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lesson.main(["--epochs", "0", "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "--epochs" in capsys.readouterr().err
