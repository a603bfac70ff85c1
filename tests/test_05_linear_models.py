"""Lesson 05: every reference value of its curriculum section (on the functions' return values and
on the printed lines), the plots, the diabetes classifier on the stand-in and the real table, and
the one-line errors for a bad diabetes file."""

from __future__ import annotations

import gzip
import io
import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.data import DataError, DataUnavailable

STEM = "05_linear_models"
DIABETES = Path("liuer") / "diabetes.csv.gz"
X_TOY, Y_TOY = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0])
T_C = torch.tensor([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0])
T_U = torch.tensor([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4])
T_UN = (T_U - T_U.mean()) / T_U.std()
START = torch.tensor([1.0, 0.0])
# The bold values of the curriculum, as the lesson prints them (13 values).
PRINTED = [
    "MSE at w = 0, 1, 2, 3, 4: [18.67, 4.67, 0.0, 4.67, 18.67]",
    "initial loss at w = 1, b = 0: 1763.88",
    "lr 1e-2: loss at epoch 10 9.09e+34, at epoch 11 inf",
    "lr 1e-4: loss at epoch 100 29.02, params [0.2327, -0.0438]",
    "normalized input, lr 1e-2, 5000 epochs: loss 2.927645",
    "autograd, 5000 epochs: loss 2.927645",
    "BCE per sample: [1.609, 0.223, 0.357, 1.204] (confident and wrong: most)",
    "mean BCE: 0.8483",
]


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


# --------------------------------------------------------------------------- reference values
def test_exhaustive_search(lesson):
    weights, mse = lesson.exhaustive_search(X_TOY, Y_TOY)
    assert weights.shape == mse.shape == (41,)
    at_integers = [mse[index].item() for index in (0, 10, 20, 30, 40)]
    assert at_integers == pytest.approx([18.67, 4.67, 0.0, 4.67, 18.67], abs=0.005)
    assert weights[mse.argmin()].item() == pytest.approx(2.0)


def test_gradient_descent_batch_and_stochastic_reach_w_2(lesson):
    assert lesson.gradient_descent(X_TOY, Y_TOY) == pytest.approx(2.0, abs=5e-4)
    assert lesson.gradient_descent(X_TOY, Y_TOY, stochastic=True) == pytest.approx(2.0, abs=5e-4)
    assert abs(lesson.gradient_descent(X_TOY, Y_TOY, epochs=5) - 2.0) > 0.01  # not yet there


def test_thermometer_reference_values(lesson):
    assert lesson.loss_fn(lesson.model(T_U, 1.0, 0.0), T_C).item() == pytest.approx(
        1763.88, abs=5e-3
    )
    params, losses = lesson.training_loop(100, 1e-4, START, T_U, T_C)
    assert losses[-1] == pytest.approx(29.02, abs=5e-3)
    assert params.tolist() == pytest.approx([0.2327, -0.0438], abs=5e-5)
    _, normalized = lesson.training_loop(5000, 1e-2, START, T_UN, T_C)
    assert normalized[-1] == pytest.approx(2.927645, abs=2e-6)
    # downhill all the way (to float32 rounding once it has converged)
    assert all(later <= earlier + 1e-5 for earlier, later in itertools.pairwise(normalized))


def test_divergence_is_detected_not_crashed(lesson, capsys):
    _, losses = lesson.training_loop(100, 1e-2, START, T_U, T_C)
    assert len(losses) == 11  # stopped at the first infinite loss
    assert losses[9] == pytest.approx(9.09e34, rel=1e-3) and losses[10] == math.inf
    assert all(later > earlier for earlier, later in itertools.pairwise(losses))
    assert "epoch 11: loss inf -> diverged, stopping" in capsys.readouterr().out


def test_hand_written_gradients_equal_autograd(lesson):
    params = torch.tensor([0.7, -1.3], requires_grad=True)
    t_p = lesson.model(T_U, *params)
    lesson.loss_fn(t_p, T_C).backward()
    assert torch.allclose(lesson.grad_fn(T_U, T_C, t_p.detach()), params.grad, rtol=1e-5)


@pytest.mark.parametrize("use_optimizer", [False, True])
def test_autograd_and_optim_sgd_give_the_same_fit(lesson, use_optimizer):
    by_hand, _ = lesson.training_loop(5000, 1e-2, START, T_UN, T_C)
    params, loss = lesson.fit_with_autograd(T_UN, T_C, use_optimizer)
    assert loss == pytest.approx(2.927645, abs=2e-6)
    assert torch.allclose(params, by_hand, atol=1e-4)


def test_nn_linear_predicts_8_at_x_4(lesson):
    torch.manual_seed(0)
    linear = nn.Linear(1, 1)
    losses = lesson.fit_toy(linear, X_TOY[:, None], Y_TOY[:, None], nn.MSELoss(), 0.01, 2000)
    assert len(losses) == 2000 and losses[-1] < 1e-3 < losses[0]
    assert linear(torch.tensor([[4.0]])).item() == pytest.approx(8.0, abs=0.05)


def test_logistic_regression_crosses_one_half_between_2_and_3(lesson):
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())
    labels = torch.tensor([[0.0], [0.0], [1.0]])
    losses = lesson.fit_toy(classifier, X_TOY[:, None], labels, nn.BCELoss(), 0.1, 1000)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        at_2, at_3 = classifier(torch.tensor([[2.0], [3.0]])).squeeze(1).tolist()
    assert at_2 < 0.5 < at_3


def test_bce_table(lesson):
    y, p, bce = lesson.bce_table()
    assert y.tolist() == [1.0, 1.0, 0.0, 0.0] and p.tolist() == pytest.approx([0.2, 0.8, 0.3, 0.7])
    assert bce.tolist() == pytest.approx([1.609, 0.223, 0.357, 1.204], abs=5e-4)
    assert bce.mean().item() == pytest.approx(0.8483, abs=5e-5)


def test_stacked_linear_layers_collapse(lesson):
    gap, gap_relu = lesson.stacked_linear_collapse()
    assert gap < 1e-5 < 0.01 < gap_relu


# --------------------------------------------------------------------------- the quick run
def test_every_reference_value_is_printed(quick_run):
    run = quick_run(STEM)
    for line in PRINTED:
        assert run.line(line.split(":")[0] + ":") == line
    assert "prediction at x = 4: 7.99" in run.line("nn.Linear: ")
    assert "overshoot" in run.printed and "epoch 11: loss inf -> diverged, stopping" in run.printed


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    variables, metrics = run.globals, run.metrics
    assert metrics["mse_at_integers"] == [18.67, 4.67, 0.0, 4.67, 18.67]
    assert metrics["initial_loss"] == pytest.approx(1763.88, abs=5e-3)
    assert metrics["diverged_at_epoch"] == 11
    assert 7.95 < metrics["linear_prediction_at_4"] < 8.05
    assert 2.0 < metrics["logistic_crossing"] < 3.0
    assert metrics["mean_bce"] == pytest.approx(0.8483, abs=5e-5)
    assert (len(variables["train_set"]), len(variables["test_set"])) == (608, 151)
    assert variables["table"].shape == (759, 9)
    assert isinstance(variables["net"], nn.Sequential)


def test_the_quick_diabetes_run_uses_the_announced_stand_in(quick_run):
    run = quick_run(STEM)
    history, metrics = run.globals["loss_history"], run.metrics
    assert run.printed.count("NOTICE: diabetes") == 1
    assert metrics["data"] == "stand-in" and metrics["headline"] == "held_out_accuracy"
    assert len(history) == 10 and history[-1] < history[0]
    # The stand-in's rule is learnable: well above always guessing the commoner label.
    assert metrics["held_out_accuracy"] >= 0.8 > metrics["majority_baseline"]
    assert run.line("held-out accuracy ").endswith("on 151 rows never trained on")


def test_plots_are_saved_as_png(quick_run):
    out = quick_run(STEM).out
    for name in ("mse_vs_w.png", "thermometer_fit.png", "logistic_curve.png"):
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size > 5_000, name  # a real figure, not an empty canvas


# --------------------------------------------------------------------------- the classifier
def test_the_stand_in_is_deterministic(lesson):
    table = lesson.stand_in_diabetes()
    assert table.shape == (759, 9) and table.dtype == np.float32
    assert np.array_equal(table, lesson.stand_in_diabetes())
    assert set(np.unique(table[:, -1])) == {0.0, 1.0}
    assert np.abs(table[:, :-1]).max() <= 1.0  # features scaled to [-1, 1] like the real table


def test_the_training_loop_lowers_the_loss(lesson, one_thread):
    table = torch.from_numpy(lesson.stand_in_diabetes())
    loader = DataLoader(TensorDataset(table[:, :-1], table[:, -1:]), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 1), nn.Sigmoid())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = [lesson.train_epoch(net, loader, nn.BCELoss(), optimizer, "cpu") for _ in range(8)]
    assert losses[-1] < 0.6 * losses[0], losses
    assert lesson.accuracy(net, loader, "cpu") > 0.8


def test_stand_in_refused_when_real_data_is_required(lesson, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_REQUIRE_REAL_DATA", "1")
    with pytest.raises(DataUnavailable, match="diabetes"):
        lesson.load_diabetes(SimpleNamespace(data_dir=tmp_path, offline=True))


def test_the_stand_in_is_announced_offline(lesson, tmp_path, capsys):
    table = lesson.load_diabetes(SimpleNamespace(data_dir=tmp_path, offline=True))
    assert np.array_equal(table, lesson.stand_in_diabetes())
    assert capsys.readouterr().out.startswith("NOTICE: diabetes")


# --------------------------------------------------------------------------- bad data files
def good_csv(lesson) -> str:
    buffer = io.StringIO()
    np.savetxt(buffer, lesson.stand_in_diabetes(), delimiter=",", fmt="%g")
    return buffer.getvalue()


def write_table(root: Path, payload: bytes) -> Path:
    path = root / DIABETES
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_a_good_gzipped_table_reads_back(lesson, tmp_path):
    path = write_table(tmp_path, gzip.compress(good_csv(lesson).encode()))
    table = lesson.read_diabetes(path)
    assert table.shape == (759, 9) and table.dtype == np.float32
    assert np.allclose(table, lesson.stand_in_diabetes(), atol=1e-5)
    assert np.array_equal(lesson.load_diabetes(SimpleNamespace(data_dir=tmp_path, offline=True)),
                          table)  # fmt: skip


BAD_FILES = {
    "truncated gzip": lambda csv: gzip.compress(csv.encode())[:3000],
    "plain CSV named .gz": lambda csv: csv.encode(),
    "five columns": lambda csv: gzip.compress(
        "\n".join(",".join(row.split(",")[:5]) for row in csv.splitlines()).encode()
    ),
    "a header row": lambda csv: gzip.compress(("a,b,c,d,e,f,g,h,label\n" + csv).encode()),
    "labels other than 0/1": lambda csv: gzip.compress(csv.replace(",1\n", ",2\n").encode()),
    "empty": lambda csv: gzip.compress(b""),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_table_is_a_one_line_data_error_naming_the_file(lesson, tmp_path, kind):
    path = write_table(tmp_path, BAD_FILES[kind](good_csv(lesson)))
    with pytest.raises(DataError) as caught:
        lesson.read_diabetes(path)
    message = str(caught.value)
    assert str(path) in message
    assert "expected a gzip-compressed CSV with 9 numbers per row" in message
    assert "\n" not in message


def test_a_bad_table_stops_the_lesson_rather_than_falling_back(lesson, tmp_path):
    write_table(tmp_path / "data", gzip.compress(good_csv(lesson).encode())[:3000])
    with pytest.raises(DataError, match=r"diabetes\.csv\.gz: expected"):
        run_script(STEM, tmp_path / "out", "--quick", "--data-dir", str(tmp_path / "data"))


def test_the_command_line_prints_one_error_line(lesson, tmp_path):
    path = write_table(tmp_path / "data", good_csv(lesson).encode())  # not gzipped
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    assert one_line_error(result).startswith(f"error: {path}: expected a gzip-compressed CSV")


def test_a_bad_flag_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--epochs", "0", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--epochs" in result.stderr


# --------------------------------------------------------------------------- real data
@pytest.mark.real_data
def test_the_real_table_has_the_expected_shape(lesson, real_data_dir):
    table = lesson.read_diabetes(real_data_dir / DIABETES)
    assert table.shape == (759, 9)
    assert set(np.unique(table[:, -1])) == {0.0, 1.0}
    assert 0.6 < table[:, -1].mean() < 0.7  # about two thirds labelled 1


@pytest.mark.real_data
def test_the_classifier_beats_0_72_held_out_on_the_real_table(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir))  # the full 40 epochs
    assert "NOTICE" not in run.printed
    metrics = run.metrics
    assert "data" not in metrics  # the real table, not the stand-in
    assert len(run.globals["test_set"]) == 151
    assert metrics["held_out_accuracy"] >= 0.72 > metrics["majority_baseline"]
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]
