"""Lesson 14: attention by hand equals F.scaled_dot_product_attention (with a mask), rows sum to
1, nn.MultiheadAttention shapes, and the LSTM encoder-decoder decodes both toy pairs exactly."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import load_lesson, run_lesson_main

STEM = "14_attention_seq2seq"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lesson14")
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", buffer)
        metrics = run_lesson_main(STEM, tmp_path, "--quick")
    return metrics, buffer.getvalue(), tmp_path / STEM


def test_attention_reference_values(quick_run):
    metrics, text, _ = quick_run
    for key in (
        "sdpa_matches_masked",
        "sdpa_matches_unmasked",
        "sdpa_matches_additive_mask",
        "attention_rows_sum_to_one",
        "masked_weights_zero",
    ):
        assert metrics[key] is True, key
    assert "equals F.scaled_dot_product_attention (bool mask): True" in text
    assert "every row sums to 1: True" in text


def test_attention_by_hand_against_sdpa(lesson):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 2, generator=g) for _ in range(3))
    mask = torch.tensor([[True, False, True], [True, True, False], [False, True, True]])
    out, weights = lesson.attention_by_hand(q, k, v, mask)
    # bool attn_mask in SDPA: True = takes part; the hand version follows the same convention
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all()
    # the opposite convention would give a different answer: the test can tell them apart
    assert not torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=~mask))


def test_multihead_shapes(quick_run):
    metrics, _, _ = quick_run
    assert metrics["mha_output_shape"] == [2, 4, 8]
    assert metrics["mha_weights_shape"] == [2, 4, 5]
    assert metrics["mha_per_head_weights_shape"] == [2, 2, 4, 5]
    assert metrics["self_attention_output_shape"] == [2, 5, 8]
    assert metrics["self_attention_weights_shape"] == [2, 5, 5]
    assert metrics["key_padding_ignored"] is True


def test_seq2seq_decodes_exactly(quick_run):
    metrics, text, out = quick_run
    assert metrics["translations"] == {"hello world": "bonjour monde", "hello": "bonjour"}
    assert metrics["all_translations_exact"] is True
    history = metrics["seq2seq_loss_history"]
    assert history[-1] < history[0] / 100
    assert "'hello world' -> 'bonjour monde'" in text
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["all_translations_exact"] is True
    assert (out / "seq2seq_loss.png").stat().st_size > 0


def test_full_run_decodes_exactly_other_seed(tmp_path):
    metrics = run_lesson_main(STEM, tmp_path, "--seed", "5")
    assert len(metrics["seq2seq_loss_history"]) == 200
    assert metrics["translations"] == {"hello world": "bonjour monde", "hello": "bonjour"}


def test_batch_layout(lesson):
    source, lengths, decoder_in, decoder_out = lesson.make_batch("cpu")
    assert source.tolist() == [[3, 4, 2], [3, 2, 0]]  # words + <EOS>, padded with <PAD>
    assert lengths.tolist() == [3, 2]
    assert decoder_in.tolist() == [[1, 3, 4], [1, 3, 0]]  # <SOS> + words (teacher forcing)
    assert decoder_out.tolist() == [[3, 4, 2], [3, 2, 0]]  # words + <EOS>


def test_translate_rejects_unknown_words(lesson):
    encoder, decoder = lesson.Encoder(5, 4), lesson.Decoder(5, 4)
    with pytest.raises(ValueError, match="cannot translate"):
        lesson.translate(encoder, decoder, "hello moon", "cpu")
