"""Lesson 14: attention by hand equals F.scaled_dot_product_attention (with a mask), rows sum to
1, nn.MultiheadAttention shapes, and the LSTM encoder-decoder decodes both toy pairs exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import load_lesson, run_lesson_cli, run_script
from torch import nn

STEM = "14_attention_seq2seq"
TRANSLATIONS = {"hello world": "bonjour monde", "hello": "bonjour"}
MHA_SHAPES = {
    "output [batch, target, embed]": [2, 4, 8],
    "weights [batch, target, source]": [2, 4, 5],
    "per-head weights [batch, heads, target, source]": [2, 2, 4, 5],
}


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def seeded_qkv(seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(3, 2, generator=g) for _ in range(3))


def test_attention_by_hand_against_sdpa(lesson):
    q, k, v = seeded_qkv(3)
    mask = torch.tensor([[True, False, True], [True, True, False], [False, True, True]])
    out, weights = lesson.attention_by_hand(q, k, v, mask)
    # bool attn_mask in SDPA: True = takes part; the hand version follows the same convention
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    # the opposite convention would give a different answer: the test can tell them apart
    assert not torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=~mask))


@pytest.mark.parametrize("seed", [0, 42])
def test_every_attention_check_holds(lesson, seed):
    q, k, v = seeded_qkv(seed)
    checks = lesson.compare_with_sdpa(q, k, v, torch.ones(3, 3, dtype=torch.bool).tril())
    assert len(checks) == 5 and all(value is True for value in checks.values()), checks


def test_the_attention_checks_are_printed(quick_run):
    run = quick_run(STEM)
    checks = run.globals["attention_checks"]
    assert len(checks) == 5 and run.metrics["attention_checks"] == checks
    for label in checks:
        assert run.line(f"{label}: ") == f"{label}: True"
    assert run.line("equals F.scaled_dot_product_attention (bool mask): ").endswith("True")
    assert run.line("every row of weights sums to 1: ").endswith("True")
    weights, mask = run.globals["weights"], run.globals["mask"]
    assert weights.shape == (3, 3) and mask.tolist() == torch.ones(3, 3).tril().bool().tolist()
    assert torch.allclose(weights.sum(-1), torch.ones(3)) and (weights.triu(1) == 0).all()
    assert run.line("row sums: ")


def test_multihead_shapes(lesson, quick_run):
    assert lesson.multi_head_shapes() == MHA_SHAPES
    run = quick_run(STEM)
    for label, shape in MHA_SHAPES.items():
        assert run.line(f"{label}: ") == f"{label}: {shape}"


def test_self_attention_and_padding(lesson, quick_run):
    torch.manual_seed(0)
    padding = torch.tensor([[False, False, True], [False, False, False]])
    result = lesson.self_attention(torch.randn(2, 3, 8), padding)
    assert result == {"output": [2, 3, 8], "weights": [2, 3, 3], "padded keys get weight 0": True}
    run = quick_run(STEM)
    assert run.globals["self_attention_result"] == {
        "output": [2, 5, 8],
        "weights": [2, 5, 5],
        "padded keys get weight 0": True,
    }
    assert run.line("padded keys get weight 0: ").endswith("True")


def test_batch_layout(lesson):
    source, lengths, decoder_in, decoder_out = lesson.make_batch("cpu")
    assert source.tolist() == [[3, 4, 2], [3, 2, 0]]  # words + <EOS>, padded with <PAD>
    assert lengths.tolist() == [3, 2]
    assert decoder_in.tolist() == [[1, 3, 4], [1, 3, 0]]  # <SOS> + words (teacher forcing)
    assert decoder_out.tolist() == [[3, 4, 2], [3, 2, 0]]  # words + <EOS>: no <SOS> target


def test_encoder_decoder_shapes(lesson):
    source, lengths, decoder_in, _ = lesson.make_batch("cpu")
    encoder, decoder = lesson.Encoder(5, 16), lesson.Decoder(5, 16)
    h, c = encoder(source, lengths)
    assert h.shape == c.shape == (1, 2, 16)
    scores, _ = decoder(decoder_in, (h, c))
    assert scores.shape == (2, 3, 5)
    # packing: the short sentence's state ignores its padding (the same as encoding it alone)
    alone, _ = encoder(source[1:, :2], torch.tensor([2]))
    assert torch.allclose(h[:, 1], alone[:, 0], atol=1e-6)


def test_the_training_loop_lowers_the_loss_and_translates(lesson, one_thread):
    torch.manual_seed(1)
    encoder, decoder = lesson.Encoder(5, 32), lesson.Decoder(5, 32)
    history = lesson.train_seq2seq(encoder, decoder, lesson.make_batch("cpu"), 100)
    assert len(history) == 100 and history[-1] < history[0] / 100, history[::20]
    encoder.eval()
    decoder.eval()
    for src, tgt in TRANSLATIONS.items():
        assert lesson.translate(encoder, decoder, src, "cpu") == tgt


def test_the_quick_run_decodes_exactly(quick_run):
    run = quick_run(STEM)
    metrics = run.metrics
    assert metrics["translations"] == TRANSLATIONS
    assert metrics["all_translations_exact"] is True
    assert metrics["headline"] == "all_translations_exact"
    history = metrics["seq2seq_loss_history"]
    assert len(history) == metrics["epochs"] == 100  # --quick: 100 of the 200 epochs
    assert history[-1] < history[0] / 100
    assert run.line(" 'hello world' -> ") == (
        " 'hello world' -> 'bonjour monde'  (expected 'bonjour monde': True)"
    )
    assert "'hello' -> 'bonjour'" in run.printed
    assert isinstance(run.globals["encoder"], nn.Module)
    assert run.globals["args"].threads == 1  # tiny models: single-threaded by default
    assert (run.out / "seq2seq_loss.png").stat().st_size > 0


def test_full_run_decodes_exactly_other_seed(tmp_path):
    run = run_script(STEM, tmp_path, "--seed", "5")
    assert len(run.metrics["seq2seq_loss_history"]) == 200
    assert run.metrics["translations"] == TRANSLATIONS
    assert run.line("epoch  200: loss ")


def test_translate_rejects_unknown_words(lesson):
    encoder, decoder = lesson.Encoder(5, 4), lesson.Decoder(5, 4)
    with pytest.raises(ValueError, match="cannot translate"):
        lesson.translate(encoder, decoder, "hello moon", "cpu")
    with pytest.raises(ValueError, match="cannot translate"):
        lesson.translate(encoder, decoder, "   ", "cpu")


def test_bad_epochs_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--epochs", "-3", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--epochs" in result.stderr
