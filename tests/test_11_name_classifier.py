"""Lesson 11: names as padded, sorted ASCII codes; the bidirectional GRU; data forms and errors."""

from __future__ import annotations

import gzip

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch import nn

from common import LessonError
from common.data import DataError

STEM = "11_name_classifier"
TARGET = 0.80  # the full run's test accuracy on the real names data, at least


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_names_become_padded_codes_sorted_longest_first(lesson):
    assert lesson.name_to_codes("Kim").tolist() == [75, 105, 109]
    codes, lengths, order = lesson.make_batch(["Kim", "Ivanov", "Li"])
    assert codes.shape == (3, 6) and codes.dtype == torch.long
    assert lengths.tolist() == [6, 3, 2]
    assert order.tolist() == [1, 0, 2]
    assert codes[0].tolist() == [ord(c) for c in "Ivanov"]
    assert codes[2].tolist() == [ord("L"), ord("i"), 0, 0, 0, 0]  # zero padding
    assert int(codes.max()) < lesson.N_CHARS == 128


def test_labels_follow_the_sorting(lesson):
    index = {"Korean": 0, "Russian": 1}
    _, _, labels = lesson.collate([("Kim", "Korean"), ("Ivanov", "Russian")], index)
    assert labels.tolist() == [1, 0]  # Ivanov (longest) comes first


def test_the_gru_reads_both_directions(lesson):
    torch.manual_seed(0)
    model = lesson.NameClassifier(n_languages=18).eval()
    assert model.gru.bidirectional and model.gru.num_layers == 2
    codes, lengths, _ = lesson.make_batch(["Nakamura", "Li", "Schmidt"])
    with torch.no_grad():
        logits = model(codes, lengths)
        assert logits.shape == (3, 18)
        # Padding must not change a name's prediction: packing stops at its last character.
        alone = model(*lesson.make_batch(["Li"])[:2])
        torch.testing.assert_close(alone, logits[2:3], atol=1e-5, rtol=1e-5)
        # The classifier reads the top layer's last forward state, then its last backward state.
        packed = nn.utils.rnn.pack_padded_sequence(model.embedding(codes), lengths, True)
        output, hidden = model.gru(packed)
        assert hidden.shape == (4, 3, 100)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True)
        forward_last = output[torch.arange(3), lengths - 1, :100]  # after each name's last letter
        backward_first = output[:, 0, 100:]  # the backward pass ends at the first letter
        both = torch.cat([forward_last, backward_first], dim=1)
        torch.testing.assert_close(model.classifier(both), logits)


def test_predict_gives_the_top_three_in_the_order_asked(lesson):
    torch.manual_seed(0)
    model, languages = lesson.NameClassifier(n_languages=5), list("ABCDE")
    names = ["Li", "Nakamura", "Kim"]
    predictions = lesson.predict(model, names, languages, "cpu")
    assert list(predictions) == names
    for guesses in predictions.values():
        assert len(guesses) == 3 and {language for language, _ in guesses} <= set(languages)
        probabilities = [p for _, p in guesses]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1


def test_the_training_loop_lowers_the_loss(lesson):
    torch.manual_seed(0)
    index = {"Japanese": 0, "Russian": 1, "German": 2}
    pairs = [("Nakamura", "Japanese"), ("Ivanov", "Russian"), ("Schmidt", "German"),
             ("Tanaka", "Japanese"), ("Petrov", "Russian"), ("Bauer", "German")]  # fmt: skip
    batches = [lesson.collate(pairs, index)]
    model = lesson.NameClassifier(n_languages=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = [lesson.train_epoch(model, batches, optimizer, "cpu") for _ in range(20)]
    assert losses[-1] < 0.3 * losses[0], losses
    assert lesson.accuracy(model, batches, "cpu") == 1.0


def test_checked_names(lesson):
    assert lesson.checked_names([" Rossi ", "Smith"]) == ["Rossi", "Smith"]
    for bad in ["", "   ", "Müller"]:
        with pytest.raises(LessonError, match="--predict"):
            lesson.checked_names([bad])


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    metrics, variables = run.metrics, run.globals
    assert metrics["source"] == "stand-in" and metrics["data"] == "stand-in"
    assert run.printed.count("NOTICE") == 1
    assert isinstance(variables["model"], nn.Module)
    assert variables["accuracy_history"] == metrics["accuracy_history"]
    assert len(metrics["loss_history"]) == 2
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]
    assert metrics["test_accuracy"] > 1 / metrics["languages"]  # above chance
    assert list(metrics["predictions"]) == load_lesson(STEM).SHOWN_NAMES
    assert (run.out / "accuracy.png").stat().st_size > 0
    assert run.line("['Kim', 'Nakamura', 'Li'] sorted: ") == (
        "['Kim', 'Nakamura', 'Li'] sorted: ['Nakamura', 'Kim', 'Li'], lengths [8, 3, 2]"
    )
    assert "hidden [4, 3, 100] (layers x directions, names, hidden size)" in run.printed
    assert run.line("epoch  1: train loss")
    assert run.line("    Nakamura: ")


@pytest.mark.parametrize("name", ["", "   ", "Müller"])
def test_bad_names_to_predict_are_one_line_errors(tmp_path, name):
    result = run_lesson_cli(STEM, "--quick", "--out", str(tmp_path), "--predict", name)
    assert one_line_error(result).startswith("error: --predict")


def write_names(root, train_text: str | bytes, gzipped: bool = True):
    (root / "liuer").mkdir(parents=True)
    train = root / "liuer" / "names_train.csv.gz"
    if gzipped:
        with gzip.open(train, "wt") as file:
            file.write(train_text)
    else:
        train.write_text(train_text, encoding="utf-8")
    with gzip.open(root / "liuer" / "names_test.csv.gz", "wt") as file:
        file.write('"Kim","Korean"\n')


def test_malformed_csv_names_the_file(tmp_path):
    write_names(tmp_path / "data", '"Adsit","Czech","extra"\n')
    with pytest.raises(DataError, match=r"names_train\.csv\.gz: line 1"):
        run_script(STEM, tmp_path / "out", "--quick", "--data-dir", str(tmp_path / "data"))


def test_a_names_file_that_is_not_gzip_is_a_one_line_error(tmp_path):
    write_names(tmp_path / "data", "name,language\nKim,Korean\n", gzipped=False)
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    assert "names_train.csv.gz" in one_line_error(result)


@pytest.mark.parametrize("flags", [["--names-format", "xml"], ["--lr", "0"]])
def test_bad_flags_are_argparse_errors(tmp_path, flags):
    result = run_lesson_cli(STEM, "--quick", "--out", str(tmp_path), *flags)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert flags[0] in result.stderr


@pytest.mark.real_data
def test_real_names_briefly_trained_beat_chance(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--epochs", "2", "--data-dir", str(real_data_dir))
    metrics = run.metrics
    assert "NOTICE" not in run.printed and "data" not in metrics
    assert metrics["source"] == "liuer"
    assert metrics["languages"] == 18 and metrics["test_names"] == 6700
    assert metrics["test_accuracy"] >= 0.70  # always guessing Russian scores 0.47
    assert metrics["predictions"]["Nakamura"][0][0] == "Japanese"


@pytest.mark.real_data
def test_the_full_run_reaches_the_target(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir))
    metrics = run.metrics
    assert len(metrics["accuracy_history"]) == 10
    assert metrics["test_accuracy"] >= TARGET, metrics["accuracy_history"]
    assert run.line("test accuracy ").startswith(
        f"test accuracy {metrics['test_accuracy']:.4f} after 10 epochs, "
    )


@pytest.mark.real_data
def test_the_tutorial_files_work_too(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--quick", "--names-format", "tutorial",
                     "--data-dir", str(real_data_dir))  # fmt: skip
    assert run.metrics["source"] == "tutorial" and run.metrics["languages"] == 18
