"""Lesson 10: AG_NEWS text classification — data, text pipeline, collate_fn, models, targets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch import nn

from common import news, text
from common.data import DataError, DataUnavailable

STEM = "10_text_classification"
MODELS = ("fasttext", "rnn", "gru")
TARGET = 0.80  # the best model's test accuracy on the 6,000/1,600 split of the real test.csv
TOKENS = {  # what "basic_english" makes of real AG_NEWS text
    "Tougher rules won't soften Law's game":
        ["tougher", "rules", "won", "'", "t", "soften", "law", "'", "s", "game"],
    "China Says Taiwan Spy Also Operated in U.S. - Media":
        ["china", "says", "taiwan", "spy", "also", "operated", "in", "u", ".", "s", ".", "-",
         "media"],
    'Wiltshire Police warns about "phishing" after its fraud squad chief was targeted.':
        ["wiltshire", "police", "warns", "about", "phishing", "after", "its", "fraud", "squad",
         "chief", "was", "targeted", "."],
    "UPDATE: China Mobile 1H Net Up 7.8 On Subscriber Growth":
        ["update", "china", "mobile", "1h", "net", "up", "7", ".", "8", "on", "subscriber",
         "growth"],
    r"TORONTO, Canada -- A second\team of rocketeers competing for the  #36;10 million prize":
        ["toronto", ",", "canada", "--", "a", "second\\team", "of", "rocketeers", "competing",
         "for", "the", "#36", "10", "million", "prize"],
    "Eriksson doesn #39;t feel any extra pressure (AP)":
        ["eriksson", "doesn", "#39", "t", "feel", "any", "extra", "pressure", "(", "ap", ")"],
}  # fmt: skip
WALKTHROUGH = {  # vocabulary_walkthrough of the three texts below
    "counts (Counter.most_common)": [("the", 3), ("rockets", 2), ("moon", 2), ("launch", 1),
                                     (".", 1), (",", 1), ("and", 1), ("stars", 1)],
    "vocabulary (get_itos)": ["<pad>", "<unk>", "the", "moon", "rockets", "!", ",", ".", "and",
                              "launch", "stars"],
    "ids of the first text": [4, 9, 7],
    "'qwertyuiop' before set_default_index": "RuntimeError",
    "'qwertyuiop' after set_default_index": 1,
}  # fmt: skip
TEXTS = ["Rockets launch.", "The rockets, the moon and the stars!", "Moon"]


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


@pytest.fixture(scope="module")
def tokenizer():
    return text.get_tokenizer("basic_english")


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
    assert news.read_ag_news_csv(path) == [
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
        news.read_ag_news_csv(path)


def test_bad_csv_stops_the_lesson_with_one_line(tmp_path):
    write_csv(tmp_path / "data" / "AG_NEWS" / "test.csv", ["label;title;text", "1;a;b"])
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    assert "test.csv line 1" in one_line_error(result)


def test_a_truncated_or_tiny_csv_is_a_data_error(lesson, tmp_path):
    root = tmp_path / "root"
    write_csv(root / "AG_NEWS" / "test.csv", ['"1","Title","Text"', '"2","Cut off here'])
    with pytest.raises(DataError, match=r"test\.csv"):
        news.read_ag_news_csv(root / "AG_NEWS" / "test.csv")
    write_csv(root / "AG_NEWS" / "test.csv", ['"1","Title","Text"'] * 5)
    with pytest.raises(DataError, match="only 5 rows, too few to split"):
        lesson.load_ag_news(SimpleNamespace(data_dir=root, offline=True))


def test_the_stand_in_is_deterministic_four_topic_news(lesson):
    rows = news.stand_in_news(400, seed=1)
    assert rows == news.stand_in_news(400, seed=1)
    assert rows != news.stand_in_news(400, seed=2)
    assert {label for label, _ in rows} == {0, 1, 2, 3}
    assert all(isinstance(text, str) and len(text.split()) >= 8 for _, text in rows)


def test_stand_ins_are_refused_when_real_data_is_required(tmp_path):
    with pytest.raises(DataUnavailable, match="AG_NEWS"):
        run_script(STEM, tmp_path / "out", "--quick", "--data-dir", str(tmp_path),
                   env={"LESSONS_REQUIRE_REAL_DATA": "1"})  # fmt: skip


def test_a_single_small_csv_is_split_for_training(lesson, tmp_path):
    rows = news.stand_in_news(50, seed=3)  # an instructor's own small file, say
    lines = [f'"{label + 1}","{text[:20]}","{text}"' for label, text in rows]
    write_csv(tmp_path / "root" / "AG_NEWS" / "test.csv", lines)
    run = run_script(STEM, tmp_path / "out", "--quick", "--models", "fasttext",
                     "--data-dir", str(tmp_path / "root"))  # fmt: skip
    assert run.metrics["data_source"] == "AG_NEWS test.csv split 40/10"
    assert "training on 40 rows of the real test.csv" in run.printed


# --------------------------------------------------------------------------- text pipeline
def test_the_tokenizer_on_real_headlines(lesson, tokenizer):
    assert lesson.tokenize_examples(tokenizer) == TOKENS


def test_the_vocabulary_walkthrough(lesson, tokenizer):
    assert lesson.vocabulary_walkthrough(TEXTS, tokenizer) == WALKTHROUGH


def test_vocab_and_collate_pad_and_keep_lengths(lesson, tokenizer):
    rows = [(0, TEXTS[0]), (3, TEXTS[1]), (1, TEXTS[2])]
    vocab = lesson.build_vocab(rows, tokenizer)
    assert vocab.get_itos() == WALKTHROUGH["vocabulary (get_itos)"]
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


def test_vocab_is_capped_at_max_tokens(lesson, tokenizer):
    rows = [(0, " ".join(f"w{i}" for i in range(lesson.VOCAB_SIZE + 50)))]
    assert len(lesson.build_vocab(rows, tokenizer)) == lesson.VOCAB_SIZE


def test_every_pipeline_value_is_printed(quick_run):
    run = quick_run(STEM)
    for sample, tokens in TOKENS.items():
        assert f"{sample!r}\n  -> {tokens}\n" in run.printed
    assert run.line("text pipeline: ") == f"text pipeline: {text.BACKEND}"
    assert run.line("'qwertyuiop' before set_default_index: ").endswith("RuntimeError")
    assert run.line("three texts, lengths ") == "three texts, lengths [10, 13, 13], padded ids:"
    assert run.line("packed: ") == (
        f"packed: batch_sizes {[3] * 10 + [2] * 3}, sorted_indices [1, 2, 0]"
    )
    assert run.line("EmbeddingBag input: ") == "EmbeddingBag input: 36 ids, offsets [0, 10, 23]"


# --------------------------------------------------------------------------- models
def make(lesson, name, vocab_size=50):
    torch.manual_seed(0)
    if name == "fasttext":
        return lesson.FastText(vocab_size)
    return lesson.RNNClassifier(vocab_size, cell=name)


@pytest.mark.parametrize("name", MODELS)
def test_padding_does_not_change_a_texts_prediction(lesson, name):
    model = make(lesson, name).eval()
    short, long = torch.tensor([5, 6, 7]), torch.arange(10, 30)
    # enforce_sorted=False: the short text comes first, the batch is not sorted by length.
    padded = nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    with torch.no_grad():
        batch = model(padded, torch.tensor([3, 20]))
        alone = model(short[None], torch.tensor([3]))
    assert batch.shape == (2, 4)
    torch.testing.assert_close(batch[0], alone[0])


def test_the_gru_variant_is_a_gru(lesson):
    assert isinstance(make(lesson, "gru").rnn, nn.GRU)
    assert isinstance(make(lesson, "rnn").rnn, nn.RNN)


def test_fasttext_is_the_mean_of_word_embeddings(lesson):
    model = make(lesson, "fasttext", vocab_size=20).eval()
    ids, lengths = torch.tensor([[3, 4, 5], [7, 0, 0]]), torch.tensor([3, 1])
    flat, offsets = lesson.flat_ids_and_offsets(ids, lengths)
    assert flat.tolist() == [3, 4, 5, 7] and offsets.tolist() == [0, 3]
    with torch.no_grad():
        table = model.embedding.weight
        means = torch.stack([table[[3, 4, 5]].mean(0), table[[7]].mean(0)])
        torch.testing.assert_close(model(ids, lengths), model.fc(means))


@pytest.mark.parametrize("name", MODELS)
def test_the_training_loop_lowers_the_loss(lesson, name):
    """The lesson's own train_epoch, a few passes over one fixed batch."""
    model, generator = make(lesson, name), torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 12, (16,), generator=generator)
    ids = torch.randint(2, 50, (16, 12), generator=generator)
    ids[torch.arange(12) >= lengths[:, None]] = 0
    batches = [(torch.arange(16) % 4, ids, lengths)]
    optimizer = torch.optim.Adam(model.parameters(), lr=lesson.LEARNING_RATES[name])
    losses = [lesson.train_epoch(model, batches, nn.CrossEntropyLoss(), optimizer, "cpu")
              for _ in range(30)]  # fmt: skip
    assert losses[-1] < 0.5 * losses[0], losses
    assert lesson.accuracy(model, batches, "cpu") > 0.5


# --------------------------------------------------------------------------- runs
def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    metrics, histories = run.metrics, run.globals["histories"]
    assert "NOTICE: AG_NEWS" in run.printed and "stand-in" in run.printed
    assert metrics["data_source"] == "stand-in" and metrics["text_backend"] == text.BACKEND
    assert set(run.globals["models"]) == set(MODELS) == set(histories)
    assert set(metrics["predictions"]) == set(load_lesson(STEM).NEW_HEADLINES)
    for name in MODELS:
        loss = metrics[f"{name}_loss_history"]
        assert loss == histories[name]["loss"]
        assert len(loss) == 2 and loss[1] < loss[0], name
        assert len(metrics[f"{name}_seconds_per_epoch"]) == 2
        assert run.line(f"{name}: ").endswith(f"Adam {load_lesson(STEM).LEARNING_RATES[name]:g}")
    assert "s/epoch" in run.line("  epoch 1: loss")
    assert metrics["best_accuracy"] == max(metrics[f"{n}_accuracy"] for n in MODELS)
    assert run.line("best: ") == f"best: {metrics['best_model']} ({metrics['best_accuracy']:.4f})"
    assert (run.out / "accuracy.png").stat().st_size > 0


def test_predict_classifies_given_headlines(lesson, tmp_path):
    run = run_script(STEM, tmp_path, "--quick", "--data-dir", str(tmp_path), "--models",
                     "fasttext", "--predict", "Rocket reaches orbit", "Goal!")  # fmt: skip
    predictions = run.metrics["predictions"]
    assert list(predictions) == ["Rocket reaches orbit", "Goal!"]
    assert set(predictions.values()) <= set(lesson.CLASSES)


@pytest.mark.parametrize("headline", ["  ", '"" ;:'])
def test_predict_refuses_headlines_without_words(tmp_path, headline):
    result = run_lesson_cli(STEM, "--quick", "--out", str(tmp_path), "--predict", headline)
    assert "no words to classify" in one_line_error(result)


@pytest.fixture
def split_data_root(real_data_dir, tmp_path):
    """A data root holding only the real AG_NEWS test.csv, as on these machines."""
    (tmp_path / "root" / "AG_NEWS").mkdir(parents=True)
    (tmp_path / "root" / "AG_NEWS" / "test.csv").symlink_to(real_data_dir / "AG_NEWS" / "test.csv")
    return tmp_path / "root"


@pytest.mark.real_data
def test_real_split_fasttext_reaches_the_target(split_data_root, tmp_path):
    run = run_script(STEM, tmp_path / "out", "--data-dir", str(split_data_root),
                     "--models", "fasttext")  # fmt: skip
    metrics = run.metrics
    assert "training on 6,000 rows of the real test.csv" in run.printed
    assert metrics["data_source"] == "AG_NEWS test.csv split 6000/1600"
    assert (metrics["train_rows"], metrics["test_rows"]) == (6000, 1600)
    assert len(metrics["fasttext_accuracy_history"]) == 5  # the default epochs on this size
    assert metrics["best_accuracy"] >= TARGET, metrics["fasttext_accuracy_history"]
    # The vocabulary of 6,000 real texts is capped; its most frequent tokens are punctuation
    # and function words.
    assert run.line("all training rows: 20,000 tokens; most frequent ['.', 'the', ',', ")
    # The model knows sports from business on headlines it has never seen.
    assert list(metrics["predictions"].values())[:2] == ["Sports", "Business"]


@pytest.mark.real_data
def test_real_split_brief_rnn_runs_are_well_above_chance(split_data_root, tmp_path):
    run = run_script(STEM, tmp_path / "out", "--data-dir", str(split_data_root),
                     "--models", "rnn", "gru", "--epochs", "2")  # fmt: skip
    assert run.metrics["rnn_accuracy"] >= 0.35  # chance is 0.25
    assert run.metrics["gru_accuracy"] >= 0.50
