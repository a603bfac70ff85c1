"""Lesson 10: AG_NEWS text classification — data, text pipeline, collate_fn, models, targets."""

from __future__ import annotations

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main

from common import LessonError, text
from common.data import DataError, DataUnavailable

STEM = "10_text_classification"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def write_csv(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- data
def test_reading_a_csv_shifts_labels_and_joins_title_and_description(lesson, tmp_path):
    path = write_csv(
        tmp_path / "news.csv",
        ['"3","Stocks rise","Markets, up again."', '"1","Talks stall","Envoys ""pause"" talks"'],
    )
    assert lesson.read_ag_news_csv(path) == [
        (2, "Stocks rise Markets, up again."),
        (0, 'Talks stall Envoys "pause" talks'),
    ]


@pytest.mark.parametrize(
    "line",
    ['"5","Title","Text"', '"World","Title","Text"', '"1","only a title"', "id,title,text"],
)
def test_an_unknown_csv_format_is_a_data_error_naming_the_file(lesson, tmp_path, line):
    path = write_csv(tmp_path / "AG_NEWS" / "test.csv", ['"1","Fine","Row"', line])
    with pytest.raises(DataError, match=r"test\.csv line 2: expected 3 columns"):
        lesson.read_ag_news_csv(path)


def test_bad_csv_stops_the_lesson_with_one_line(tmp_path):
    write_csv(tmp_path / "data" / "AG_NEWS" / "test.csv", ["label;title;text", "1;a;b"])
    result = run_lesson_cli(
        "10_text_classification",
        "--quick",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
    )
    assert "test.csv line 1" in one_line_error(result)


def test_the_stand_in_is_deterministic_four_topic_news(lesson):
    rows = lesson.stand_in_news(400, seed=1)
    assert rows == lesson.stand_in_news(400, seed=1)
    assert rows != lesson.stand_in_news(400, seed=2)
    assert {label for label, _ in rows} == {0, 1, 2, 3}
    assert all(isinstance(text, str) and len(text.split()) >= 8 for _, text in rows)


def test_stand_ins_are_refused_when_real_data_is_required(lesson, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_REQUIRE_REAL_DATA", "1")
    with pytest.raises(DataUnavailable, match="AG_NEWS"):
        run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(tmp_path))


# --------------------------------------------------------------------------- text pipeline
def test_vocab_and_collate_pad_and_keep_lengths(lesson):
    tokenizer = text.get_tokenizer("basic_english")
    rows = [(0, "Rockets launch."), (3, "The rockets, the moon and the stars!"), (1, "Moon")]
    vocab = lesson.build_vocab(rows, tokenizer)
    # "moon" and "rockets" both occur twice: ties go by string order.
    assert vocab.get_itos()[:5] == ["<pad>", "<unk>", "the", "moon", "rockets"]
    assert vocab["never-seen"] == vocab["<unk>"] == 1
    labels, ids, lengths = lesson.make_collate(vocab, tokenizer)(rows)
    assert labels.tolist() == [0, 3, 1]
    assert lengths.tolist() == [3, 9, 1]
    assert ids.shape == (3, 9) and ids.dtype == torch.int64
    assert ids[0, 3:].eq(0).all() and ids[2, 1:].eq(0).all()  # padded with <pad> = 0
    assert ids[1].tolist() == vocab(tokenizer(rows[1][1]))
    # An empty text still gets one token (<unk>): packing refuses empty sequences.
    _, ids, lengths = lesson.make_collate(vocab, tokenizer)([(0, "")])
    assert lengths.tolist() == [1] and ids.tolist() == [[1]]


def test_vocab_is_capped_at_max_tokens(lesson):
    rows = [(0, " ".join(f"w{i}" for i in range(lesson.VOCAB_SIZE + 50)))]
    vocab = lesson.build_vocab(rows, text.get_tokenizer("basic_english"))
    assert len(vocab) == lesson.VOCAB_SIZE


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["rnn", "gru", "fasttext"])
def test_padding_does_not_change_a_texts_prediction(lesson, name):
    torch.manual_seed(0)
    model = lesson.make_model(name, vocab_size=50).eval()
    short, long = torch.tensor([5, 6, 7]), torch.arange(10, 30)
    # enforce_sorted=False: the short text comes first, the batch is not sorted by length.
    padded = torch.nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    with torch.no_grad():
        batch = model(padded, torch.tensor([3, 20]))
        alone = model(short[None], torch.tensor([3]))
    assert batch.shape == (2, 4)
    torch.testing.assert_close(batch[0], alone[0])


def test_fasttext_is_the_mean_of_word_embeddings(lesson):
    torch.manual_seed(0)
    model = lesson.make_model("fasttext", vocab_size=20).eval()
    ids = torch.tensor([[3, 4, 5], [7, 0, 0]])
    with torch.no_grad():
        got = model(ids, torch.tensor([3, 1]))
        table = model.embedding.weight
        means = torch.stack([table[[3, 4, 5]].mean(0), table[[7]].mean(0)])
        torch.testing.assert_close(got, model.fc(means))


# --------------------------------------------------------------------------- runs
def test_quick_run_on_the_stand_in(tmp_path, capsys):
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(tmp_path))
    printed = capsys.readouterr().out
    assert "NOTICE: AG_NEWS" in printed and "stand-in" in printed
    assert f"text pipeline: {text.BACKEND}" in printed
    assert metrics["text_backend"] == text.BACKEND
    assert metrics["data_source"] == "stand-in"
    assert set(metrics["predictions"]) == set(load_lesson(STEM).NEW_HEADLINES)
    for name in ("fasttext", "rnn", "gru"):
        history = metrics[f"{name}_loss_history"]
        assert len(history) == 2 and history[1] < history[0], name
        assert len(metrics[f"{name}_seconds_per_epoch"]) == 2
        assert f"# {name}:" in printed
    assert "s/epoch" in printed
    assert metrics["best_accuracy"] == max(
        metrics[f"{n}_accuracy"] for n in ("fasttext", "rnn", "gru")
    )
    assert (tmp_path / STEM / "accuracy.png").stat().st_size > 0


def test_predict_classifies_given_headlines_and_refuses_empty_ones(tmp_path):
    flags = ["--quick", "--data-dir", str(tmp_path), "--models", "fasttext"]
    metrics = run_lesson_main(STEM, tmp_path, *flags, "--predict", "Rocket reaches orbit", "Goal!")
    assert list(metrics["predictions"]) == ["Rocket reaches orbit", "Goal!"]
    assert set(metrics["predictions"].values()) <= set(load_lesson(STEM).CLASSES)
    with pytest.raises(LessonError, match="no words"):
        run_lesson_main(STEM, tmp_path, *flags, "--predict", "  ")


@pytest.fixture
def split_data_root(real_data_dir, tmp_path):
    """A data root holding only the real AG_NEWS test.csv, as on these machines."""
    (tmp_path / "root" / "AG_NEWS").mkdir(parents=True)
    (tmp_path / "root" / "AG_NEWS" / "test.csv").symlink_to(real_data_dir / "AG_NEWS" / "test.csv")
    return tmp_path / "root"


@pytest.mark.real_data
def test_real_split_fasttext_reaches_the_target(split_data_root, tmp_path, capsys):
    metrics = run_lesson_main(
        STEM, tmp_path, "--data-dir", str(split_data_root), "--models", "fasttext"
    )
    printed = capsys.readouterr().out
    assert "training on 6,000 rows of the real test.csv" in printed
    assert metrics["data_source"] == "AG_NEWS test.csv split 6000/1600"
    assert (metrics["train_rows"], metrics["test_rows"]) == (6000, 1600)
    assert len(metrics["fasttext_accuracy_history"]) == 5  # the default epochs on this size
    assert metrics["best_accuracy"] >= 0.80
    # The model knows sports from business on headlines it has never seen.
    predictions = list(metrics["predictions"].values())
    assert predictions[:2] == ["Sports", "Business"]


@pytest.mark.real_data
def test_real_split_brief_rnn_runs_are_well_above_chance(split_data_root, tmp_path):
    metrics = run_lesson_main(
        STEM, tmp_path, "--data-dir", str(split_data_root), "--models", "rnn", "gru",
        "--epochs", "2",
    )  # fmt: skip
    assert metrics["rnn_accuracy"] >= 0.35  # chance is 0.25
    assert metrics["gru_accuracy"] >= 0.50


def test_a_single_small_csv_is_split_for_training(lesson, tmp_path, capsys):
    rows = lesson.stand_in_news(50, seed=3)  # an instructor's own small file, say
    lines = [f'"{label + 1}","{text[:20]}","{text}"' for label, text in rows]
    write_csv(tmp_path / "root" / "AG_NEWS" / "test.csv", lines)
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(tmp_path / "root"))
    assert metrics["data_source"] == "AG_NEWS test.csv split 40/10"
    assert "training on 40 rows of the real test.csv" in capsys.readouterr().out
