"""Lesson 17: character ids, windows, the bigram table and the score, the causal mask, the GRU
and the GPT, sampling; the quick run, bad input and brief training on the real book."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import load_lesson, one_line_error, run_lesson_cli
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, RandomSampler

from common.data import DataUnavailable

STEM = "17_language_model"
V = 20  # a small vocabulary for the model tests


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def make(lesson, name: str, block: int = 32):
    torch.manual_seed(0)
    return lesson.GRULanguageModel(V) if name == "gru" else lesson.GPT(V, block)


def random_ids(shape, seed: int = 0, high: int = V) -> torch.Tensor:
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- text and windows
def test_clean_cuts_gutenberg_and_joins_wrapped_lines(lesson):
    raw = ("The Project Gutenberg EBook\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
           "It is a truth\nuniversally acknowledged.\n\nChapter 2\n\nEnd of the Project "
           "Gutenberg EBook of X\n*** END OF THIS EBOOK ***\nthe licence")  # fmt: skip
    assert lesson.clean(raw) == "It is a truth universally acknowledged.\n\nChapter 2"
    assert lesson.clean("a text\nof my own\n\nwith two paragraphs\n") == (
        "a text of my own\n\nwith two paragraphs"
    )


def test_the_stand_in_is_a_deterministic_made_up_text(lesson):
    text = lesson.stand_in_text()
    assert text == lesson.stand_in_text() and text != lesson.stand_in_text(seed=1)
    assert len(text) == 680_000 and "Elizabeth" not in text and "\n\n" in text
    assert set(text) <= set("\n !.?abdefhiklmnoqrstuvwABDFKLMQSTVW")
    words = text.lower().replace(".", " ").split()
    counts = sorted(Counter(words).values(), reverse=True)
    assert 1000 < len(counts) <= 3000 and counts[0] > 50 * counts[99]  # a long tail, as in books


def test_windows_are_a_block_and_the_next_block(lesson):
    windows = lesson.CharWindows(torch.arange(100), block=8)
    assert len(windows) == 92
    x, y = windows[5]
    assert x.tolist() == list(range(5, 13)) and y.tolist() == list(range(6, 14))
    assert windows[len(windows) - 1][1][-1] == 99  # the last window ends on the last character


# --------------------------------------------------------------------------- bigram and score
def test_the_bigram_table_counts_pairs_with_add_one_smoothing(lesson):
    ids = torch.tensor([0, 1, 0, 1, 2])  # pairs 0->1, 1->0, 0->1, 1->2
    probs = lesson.bigram_log_probs(ids, vocab=3).exp()
    counts_plus_one = torch.tensor([[1, 3, 1], [2, 1, 2], [1, 1, 1.0]])
    assert_close(probs, counts_plus_one / counts_plus_one.sum(1, keepdim=True))
    assert_close(probs.sum(1), torch.ones(3))


def test_evaluate_is_the_mean_cross_entropy_of_every_next_character(lesson):
    ids = random_ids((8 * 5 + 1,), high=5)
    log_probs = lesson.bigram_log_probs(random_ids((500,), seed=1, high=5), 5)
    bigram = nn.Embedding.from_pretrained(log_probs)
    by_hand = -log_probs[ids[:-1], ids[1:]].mean().item()
    assert lesson.evaluate(bigram, ids, block=8, device="cpu", batch=2) == pytest.approx(by_hand)
    uniform = nn.Embedding.from_pretrained(torch.zeros(5, 5))  # all logits equal
    assert lesson.evaluate(uniform, ids, block=8, device="cpu") == pytest.approx(math.log(5))


# --------------------------------------------------------------------------- the causal mask
def test_causal_attention_equals_the_fused_call_and_masks_the_future(lesson):
    q, k, v = torch.randn(3, 2, 4, 7, 16, generator=torch.Generator().manual_seed(0)).unbind(0)
    out, weights = lesson.causal_attention(q, k, v)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert weights.shape == (2, 4, 7, 7) and weights.triu(diagonal=1).eq(0).all()
    assert_close(weights.sum(-1), torch.ones(2, 4, 7))
    assert_close(out[..., 0, :], v[..., 0, :])  # the first position sees only itself


@pytest.mark.parametrize("name", ["gru", "gpt"])
def test_a_later_character_never_changes_an_earlier_prediction(lesson, name, one_thread):
    model, ids = make(lesson, name).eval(), random_ids((2, 32))
    for position in (0, 13, 31):
        changed = ids.clone()
        changed[:, position] = (ids[:, position] + 1) % V
        with torch.no_grad():
            before, after = model(ids), model(changed)
        assert_close(after[:, :position], before[:, :position], rtol=0, atol=1e-6)
        assert (after[:, position] - before[:, position]).abs().max() > 1e-3


def test_without_the_mask_the_future_leaks(lesson, monkeypatch):
    """The check above can fail: attention without the mask lets a later character through."""
    model, ids = make(lesson, "gpt").eval(), random_ids((1, 32))
    changed = ids.clone()
    changed[0, 20] = (ids[0, 20] + 1) % V
    unmasked = lambda q, k, v: (F.scaled_dot_product_attention(q, k, v), None)  # noqa: E731
    monkeypatch.setattr(lesson, "causal_attention", unmasked)
    with torch.no_grad():
        assert (model(changed)[0, :20] - model(ids)[0, :20]).abs().max() > 1e-4


def test_the_gpt_with_the_fused_call_gives_the_same_logits(lesson, monkeypatch):
    model, ids = make(lesson, "gpt").eval(), random_ids((3, 32))
    with torch.no_grad():
        by_hand = model(ids)
        fused = lambda q, k, v: (F.scaled_dot_product_attention(q, k, v, is_causal=True), None)  # noqa: E731
        monkeypatch.setattr(lesson, "causal_attention", fused)
        assert_close(model(ids), by_hand)


# --------------------------------------------------------------------------- the models
def test_model_shapes_weight_tying_and_pre_layernorm(lesson):
    ids = torch.zeros(3, 32, dtype=torch.long)
    for name in ("gru", "gpt"):
        assert make(lesson, name)(ids).shape == (3, 32, V)
    tied, untied = lesson.GPT(V, 32), lesson.GPT(V, 32, tie=False)
    assert tied.head.weight is tied.tokens.weight and untied.head.weight is not untied.tokens.weight
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(untied) - count(tied) == V * 96  # tying saves one V x dim matrix
    assert count(lesson.GPT(76, 64)) == 349_152 and count(lesson.GRULanguageModel(76)) == 271_692
    block = tied.blocks[0]
    assert isinstance(block.ln1, nn.LayerNorm) and block.mlp[0].out_features == 4 * 96
    with pytest.raises(IndexError):  # a learned position embedding: no more than `block`
        tied(torch.zeros(1, 33, dtype=torch.long))


def test_the_gpt_starts_near_the_uniform_loss(lesson):
    model, ids = make(lesson, "gpt").eval(), random_ids((8, 33))
    with torch.no_grad():
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    assert loss.item() == pytest.approx(math.log(V), abs=0.05)


@pytest.mark.parametrize("name", ["gru", "gpt"])
def test_the_training_loop_lowers_the_loss(lesson, name, one_thread):
    """The lesson's own train_epoch, a few passes over one fixed batch of windows."""
    model, ids = make(lesson, name), random_ids((16, 33))
    batches = [(ids[:, :-1], ids[:, 1:])] * 5
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=30)
    losses = [lesson.train_epoch(model, batches, nn.CrossEntropyLoss(), optimizer, scheduler,
                                 "cpu") for _ in range(6)]  # fmt: skip
    assert losses[-1] < 0.8 * losses[0], losses


# --------------------------------------------------------------------------- sampling
def test_temperature_and_top_k(lesson):
    z = torch.tensor([2.0, 1.0, 0.0, -1.0])
    assert_close(lesson.next_char_probs(z), z.softmax(0))
    assert_close(lesson.next_char_probs(z, 0.5), (2 * z).softmax(0))
    for temperature, top_k, expected in [(0.5, None, [0.865, 0.117, 0.016, 0.002]),
                                         (2.0, None, [0.455, 0.276, 0.167, 0.102]),
                                         (1.0, 2, [0.731, 0.269, 0.0, 0.0])]:  # fmt: skip
        probs = lesson.next_char_probs(z, temperature, top_k).tolist()
        assert probs == pytest.approx(expected, abs=5e-4)
    assert (
        lesson.next_char_probs(z, 0.01).argmax() == 0 and lesson.next_char_probs(z, 0.01)[0] > 0.99
    )


def test_generate_continues_the_prompt(lesson, one_thread):
    follows = torch.full((5, 5), -30.0)
    follows[torch.arange(5), (torch.arange(5) + 1) % 5] = 0.0  # a follows a - 1, almost surely
    model = nn.Embedding.from_pretrained(follows)
    out = lesson.generate(model, torch.tensor([3]), 7, block=4, device="cpu", top_k=1)
    assert out.tolist() == [3, 4, 0, 1, 2, 3, 4, 0]
    gpt, prompt = make(lesson, "gpt", block=8), torch.tensor([1, 2, 3])
    first = lesson.generate(gpt, prompt, 20, block=8, device="cpu", seed=0)  # past the block
    assert len(first) == 23 and first[:3].tolist() == [1, 2, 3]
    assert first.tolist() == lesson.generate(gpt, prompt, 20, 8, "cpu", seed=0).tolist()
    assert first.tolist() != lesson.generate(gpt, prompt, 20, 8, "cpu", seed=1).tolist()


# --------------------------------------------------------------------------- runs
def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    metrics, histories = run.metrics, run.globals["histories"]
    assert "NOTICE: Pride and Prejudice" in run.printed and metrics["data"] == "stand-in"
    assert metrics["data_source"].startswith("stand-in") and metrics["headline"] == "gpt_val_loss"
    scores = [run.line(label).split(": ")[1] for label in (
        "  bigram by hand", " F.cross_entropy", "evaluate(bigram)")]  # fmt: skip
    assert len(set(scores)) == 1  # three ways to the same bigram score
    for name in ("gru", "gpt"):
        assert run.line(f"{name}: ").split("before it by ")[1].startswith("0.0e+00")
        loss = metrics[f"{name}_loss_history"]
        assert loss == histories[name]["loss"] and len(loss) == 2 and loss[1] < loss[0]
        assert metrics[f"{name}_val_loss"] == histories[name]["val_loss"][-1]
    assert metrics["uniform_loss"] == pytest.approx(math.log(metrics["vocab_size"]))
    assert metrics["gpt_below_bigram"] == pytest.approx(
        metrics["bigram_val_loss"] - metrics["gpt_val_loss"]
    )
    prompt = run.globals["text"][run.globals["start"] :][:20]
    assert len(metrics["samples"]) == 6
    assert all(sample.startswith(prompt) for sample in metrics["samples"].values())
    assert run.line("by hand vs F.scaled_dot_product_attention").endswith(("e-07", "e-08"))
    assert (run.out / "language_models.png").stat().st_size > 0


def test_a_book_that_is_not_utf8_is_a_one_line_error(tmp_path):
    book = tmp_path / "data" / "dlwpt" / "p1ch4" / "jane-austen" / "1342-0.txt"
    book.parent.mkdir(parents=True)
    book.write_bytes(b"It is a truth \xff\xfe universally acknowledged")
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    line = one_line_error(result)
    assert "1342-0.txt" in line and "expected UTF-8 text" in line


def test_a_block_longer_than_the_text_allows_is_a_one_line_error(tmp_path):
    result = run_lesson_cli(STEM, "--quick", "--block", "100000", "--out", str(tmp_path))
    assert "too few for windows of 100000" in one_line_error(result)


def test_a_bad_block_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--block", "0", "--out", str(tmp_path))
    assert result.returncode == 2 and "--block: must be at least 1" in result.stderr


def test_the_stand_in_is_refused_when_real_data_is_required(lesson, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_REQUIRE_REAL_DATA", "1")
    with pytest.raises(DataUnavailable, match="Pride and Prejudice"):
        lesson.load_text(SimpleNamespace(data_dir=tmp_path, offline=True))


# --------------------------------------------------------------------------- the real book
@pytest.fixture
def book(lesson, real_data_dir):
    """The real book's ids, split as the lesson splits it."""
    text, source = lesson.load_text(SimpleNamespace(data_dir=real_data_dir, offline=True))
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    cut = int(0.9 * len(ids))
    return SimpleNamespace(text=text, source=source, chars=chars, train=ids[:cut], val=ids[cut:])


@pytest.mark.real_data
def test_the_real_book_and_its_bigram_score(book, lesson):
    assert book.source == "Pride and Prejudice"
    assert book.text.startswith("Produced by Anonymous Volunteers")
    assert book.text.endswith("uniting them.") and "Gutenberg" not in book.text[-5000:]
    assert (len(book.text), len(book.chars)) == (684_818, 76)
    log_probs = lesson.bigram_log_probs(book.train, 76)
    assert log_probs.shape == (76, 76)
    assert -log_probs[book.val[:-1], book.val[1:]].mean().item() == pytest.approx(2.389, abs=2e-3)


@pytest.mark.real_data
@pytest.mark.parametrize(("name", "steps"), [("gru", 100), ("gpt", 200)])
def test_brief_training_on_the_real_book_beats_the_bigram(book, lesson, name, steps, one_thread):
    """A few hundred steps of 32 windows (the lesson's full run: 903) on the real text already
    score below the bigram table's 2.389 nats/char; the GPT starts slower than the GRU."""
    torch.manual_seed(0)
    model = lesson.GRULanguageModel(76) if name == "gru" else lesson.GPT(76, 64)
    windows, draw = lesson.CharWindows(book.train, 64), torch.Generator().manual_seed(0)
    loader = DataLoader(
        windows, 32, sampler=RandomSampler(windows, num_samples=steps * 32, generator=draw)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=len(loader))
    loss = lesson.train_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, scheduler, "cpu")
    val_loss = lesson.evaluate(model, book.val[: 64 * 100 + 1], 64, "cpu")
    assert loss < math.log(76) and val_loss < 2.38, (loss, val_loss)  # the bigram: 2.389
