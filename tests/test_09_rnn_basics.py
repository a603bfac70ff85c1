"""Lesson 09: RNNCell/nn.RNN shapes, the recurrence by hand, hello -> ohlol three ways, GRU/LSTM."""

from __future__ import annotations

import pytest
import torch
from conftest import load_lesson, run_lesson_cli, run_script
from torch import nn

STEM = "09_rnn_basics"
SHAPES = {
    "cell_input": [1, 4],
    "cell_hidden": [1, 2],  # reference value
    "rnn_output": [3, 1, 2],  # reference value
    "rnn_hidden": [1, 1, 2],  # reference value
    "batch_first_input": [1, 3, 4],
    "batch_first_output": [1, 3, 2],
    "batch_first_hidden": [1, 1, 2],
    "two_layer_output": [3, 1, 2],
    "two_layer_hidden": [2, 1, 2],
}
GATE_SHAPES = {  # 2 layers x 2 directions = 4 stacked states; outputs concatenate both directions
    "GRU output (seq, batch, directions*hidden)": [3, 1, 4],
    "GRU h_n (layers*directions, batch, hidden)": [4, 1, 2],
    "LSTM output": [3, 1, 4],
    "LSTM h_n": [4, 1, 2],
    "LSTM c_n": [4, 1, 2],
    "GRU weight_ih_l0 (3 gates x hidden, input)": [6, 4],
    "LSTM weight_ih_l0 (4 gates x hidden, input)": [8, 4],
}
WAYS = ("rnncell", "rnn", "embedding")
# The reference values: hidden [1, 2], output [3, 1, 2], hidden [1, 1, 2], and "ohlol" three ways.
REFERENCE_COUNT = 3 + len(WAYS)


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_rnn_shapes(lesson):
    assert lesson.rnn_shapes() == SHAPES


def test_the_reference_shapes_are_printed(quick_run):
    run = quick_run(STEM)
    assert run.line("RNNCell, ") == "RNNCell, each of 3 steps: input [1, 4] -> hidden [1, 2]"
    assert run.line("nn.RNN: ") == "nn.RNN: output [3, 1, 2] (seq, batch, hidden), hidden [1, 1, 2]"
    assert run.line("batch_first=True: ").endswith("output [1, 3, 2], hidden [1, 1, 2]")
    assert run.line("num_layers=2: ") == "num_layers=2: output [3, 1, 2], hidden [2, 1, 2]"
    assert run.globals["shapes"] == SHAPES


@pytest.mark.parametrize(("batch", "steps"), [(1, 3), (4, 7)])
def test_recurrence_by_hand_equals_the_layer(lesson, batch, steps):
    torch.manual_seed(batch)
    rnn, x = nn.RNN(input_size=4, hidden_size=2), torch.randn(steps, batch, 4)
    with torch.no_grad():
        by_hand, expected = lesson.recurrence_by_hand(rnn, x), rnn(x)[0]
        assert by_hand.shape == (steps, batch, 2)
        assert torch.allclose(by_hand, expected, atol=1e-6)
        rnn.bias_hh_l0 += 0.5  # the hand version really reads the layer's weights
        assert torch.allclose(lesson.recurrence_by_hand(rnn, x), rnn(x)[0], atol=1e-6)
        assert not torch.allclose(lesson.recurrence_by_hand(rnn, x), expected, atol=1e-3)


def test_the_recurrence_check_is_printed(quick_run):
    run = quick_run(STEM)
    assert run.line("torch.allclose(by hand, nn.RNN output): ").endswith(": True")
    assert run.globals["recurrence_matches"] is True
    assert run.metrics["recurrence_matches_layer"] is True


def test_encoding(lesson):
    assert lesson.encode("hello").tolist() == [1, 0, 2, 2, 3]
    assert lesson.decode([3, 1, 2, 3, 2]) == "ohlol"
    assert lesson.decode(lesson.encode("ohlol").tolist()) == "ohlol"


def test_model_shapes(lesson):
    one_hot = nn.functional.one_hot(lesson.encode("hello"), 4).float().view(5, 1, 4)
    assert lesson.SeqModel()(one_hot).shape == (5, 4)
    assert lesson.EmbeddingModel()(lesson.encode("hello").view(1, 5)).shape == (5, 4)
    assert lesson.EmbeddingModel().rnn.num_layers == 2
    scores, hidden = lesson.CellModel()(one_hot[0], torch.zeros(1, 8))
    assert scores.shape == (1, 4) and hidden.shape == (1, 8)


def test_the_training_loops_lower_the_loss_and_learn_ohlol(lesson, one_thread):
    torch.manual_seed(3)
    hello, ohlol = lesson.encode("hello"), lesson.encode("ohlol")
    one_hot = nn.functional.one_hot(hello, 4).float().view(5, 1, 4)
    runs = {
        "rnncell": lesson.train_cell(lesson.CellModel(), one_hot, ohlol.view(5, 1), 15, lr=0.1),
        "rnn": lesson.train_sequence(lesson.SeqModel(), one_hot, ohlol, 15, lr=0.05),
        "embedding": lesson.train_sequence(
            lesson.EmbeddingModel(), hello.view(1, 5), ohlol, 15, lr=0.05
        ),
    }
    for way, (losses, predictions) in runs.items():
        assert len(losses) == len(predictions) == 15, way
        assert losses[-1] < losses[0] / 5, (way, losses)
        assert predictions[-1] == "ohlol", (way, predictions)


def test_all_three_ways_end_at_ohlol(quick_run):
    run = quick_run(STEM)
    assert run.metrics["predictions"] == dict.fromkeys(WAYS, "ohlol")
    assert run.metrics["all_ohlol"] is True and run.metrics["headline"] == "all_ohlol"
    for way in WAYS:
        assert run.line(f"final prediction ({way}): ") == f"final prediction ({way}): ohlol"
    assert len(run.globals["cell_predictions"]) == 15
    assert run.globals["emb_predictions"][-1] == "ohlol"
    for key in ("rnncell", "rnn", "embedding"):
        history = run.metrics[f"{key}_loss_history"]
        assert len(history) == 15 and history[-1] < history[0] / 5
    assert REFERENCE_COUNT == 6


def test_each_epoch_prediction_is_printed(quick_run):
    run = quick_run(STEM)
    rows = [line for line in run.printed.splitlines() if line.startswith("epochs ")]
    assert len(rows) == 3 * 3  # 15 epochs, five to a line, for each of the three ways
    predicted = [cell.split()[0] for row in rows for cell in row.split(": ", 1)[1].split(" | ")]
    assert len(predicted) == 45 and predicted[14] == predicted[29] == predicted[44] == "ohlol"
    assert predicted[:15] == run.globals["cell_predictions"]
    assert rows[-1].startswith("epochs 11-15: ")


@pytest.mark.parametrize("seed", ["7", "123"])
def test_the_three_ways_are_robust_to_the_seed(tmp_path, seed):
    run = run_script(STEM, tmp_path, "--quick", "--seed", seed)
    assert run.metrics["predictions"] == dict.fromkeys(WAYS, "ohlol")


def test_gru_lstm_shapes(lesson, quick_run):
    assert lesson.gru_lstm_shapes() == GATE_SHAPES
    run = quick_run(STEM)
    for label, shape in GATE_SHAPES.items():
        assert run.line(f"{label}: ") == f"{label}: {shape}"


def test_pytorch_gru_puts_the_update_gate_on_the_old_state():
    """What section 7 says: h_t = (1 - z) * n + z * h_(t-1) in PyTorch."""
    torch.manual_seed(0)
    gru, x, h = nn.GRUCell(3, 2), torch.randn(1, 3), torch.randn(1, 2)
    w_ir, w_iz, w_in = gru.weight_ih.chunk(3)
    w_hr, w_hz, w_hn = gru.weight_hh.chunk(3)
    b_ir, b_iz, b_in = gru.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = gru.bias_hh.chunk(3)
    with torch.no_grad():
        r = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
        z = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
        n = torch.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
        assert torch.allclose(gru(x, h), (1 - z) * n + z * h, atol=1e-6)
        assert not torch.allclose(gru(x, h), (1 - z) * h + z * n, atol=1e-3)


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    for name in ("cell_model", "rnn_model", "embedding_model"):
        assert isinstance(run.globals[name], nn.Module)
    assert run.globals["args"].threads == 1  # tiny models: single-threaded by default
    assert run.metrics["gate_shapes"] == GATE_SHAPES
    assert (run.out / "hello_ohlol_loss.png").stat().st_size > 0
    assert "saved figure " in run.printed


def test_bad_epochs_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--epochs", "0", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--epochs" in result.stderr
