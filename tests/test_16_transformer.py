"""Lesson 16: positional encoding, the norms, the encoder layer by hand, the classifiers."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch import nn

from common import text
from common.data import DataUnavailable

STEM = "16_transformer"
NORMS = {
    "LayerNorm = the formula per token": True,
    "BatchNorm1d = the formula per feature": True,
    "LayerNorm of text 0 when text 1 changes: same": True,
    "BatchNorm of text 0 when text 1 changes: same": False,
}


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


@pytest.fixture(scope="module")
def tokenizer():
    return text.get_tokenizer("basic_english")


def randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter (LayerNorm's gamma and beta too) drawn at random, so a copy that mixes
    up two tensors of the same shape cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return module


# --------------------------------------------------------------------------- sections 1-2
def test_positional_encoding_follows_the_formula(lesson):
    table = lesson.positional_encoding(50, 16)
    assert table.shape == (50, 16)
    assert table[0].tolist() == [0.0, 1.0] * 8
    for p, i in [(7, 0), (13, 3), (49, 7)]:
        angle = p / 10000 ** (2 * i / 16)
        assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # PE_p . PE_{p+k} depends on the distance k only, and falls with it
    dots = {k: torch.stack([table[p] @ table[p + k] for p in range(0, 30, 5)]) for k in (1, 4, 9)}
    for values in dots.values():
        torch.testing.assert_close(values, values[:1].expand_as(values), atol=1e-4, rtol=0)
    assert dots[1][0] > dots[4][0] > dots[9][0]


@pytest.mark.parametrize("seed", [0, 1])
def test_layer_norm_and_batch_norm_normalize_different_axes(lesson, seed):
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    assert lesson.compare_norms(x) == NORMS


# --------------------------------------------------------------------------- section 3
def test_attention_by_hand_equals_scaled_dot_product_attention(lesson):
    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)  # [B, heads, T, d_k]
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    out, weights = lesson.attention_by_hand(q, k, v, mask)
    sdpa = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, sdpa, atol=1e-6, rtol=1e-5)
    assert (weights[1, :, :, 3:] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_the_hand_layer_equals_torch_with_copied_weights(lesson, norm_first, masked):
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(32, 4, 48, batch_first=True, norm_first=norm_first)
    layer = randomized(layer).eval()
    hand = lesson.copy_weights(layer)
    assert isinstance(hand, lesson.EncoderLayer) and hand.norm_first is norm_first
    x = torch.randn(4, 7, 32)
    padding = torch.arange(7) >= torch.tensor([7, 5, 2, 1])[:, None] if masked else None
    with torch.no_grad():
        expected = layer(x, src_key_padding_mask=padding)
        difference = (hand(x, padding) - expected).abs().max().item()
    assert difference <= 1e-5
    assert hand.weights.shape == (4, 4, 7, 7)  # [B, heads, T, T]
    if masked:
        assert (hand.weights[2, :, :, 2:] == 0).all()  # text 2 has 2 real tokens


def test_copy_weights_takes_every_parameter(lesson):
    layer = randomized(nn.TransformerEncoderLayer(16, 2, 24, batch_first=True))
    hand = lesson.copy_weights(layer)
    theirs = {name: p for name, p in layer.named_parameters()}
    mine = dict(hand.named_parameters())
    assert sum(p.numel() for p in mine.values()) == sum(p.numel() for p in theirs.values())
    assert torch.equal(mine["in_proj.weight"], theirs["self_attn.in_proj_weight"])
    assert torch.equal(mine["norm2.bias"], theirs["norm2.bias"])
    assert torch.equal(mine["linear1.weight"], theirs["linear1.weight"])


def test_the_lessons_own_layer_check(lesson):
    differences = lesson.check_encoder_layer()
    assert len(differences) == 6
    assert all(0 <= value <= 1e-5 for value in differences.values()), differences
    assert "norm_first=True, padded batch vs each text alone" in differences


# --------------------------------------------------------------------------- data and models
def test_collate_pads_truncates_and_masks(lesson, tokenizer):
    rows = [(0, "Stocks rise again"), (2, "stocks " * 100), (1, "")]
    vocab = text.build_vocab_from_iterator(
        [tokenizer(t) for _, t in rows], specials=["<pad>", "<unk>"]
    )
    vocab.set_default_index(vocab["<unk>"])
    labels, ids, padding = lesson.make_collate(vocab, tokenizer)(rows)
    assert labels.tolist() == [0, 2, 1]
    assert ids.shape == (3, lesson.MAX_TOKENS) and ids.dtype == torch.int64
    assert (~padding).sum(1).tolist() == [3, lesson.MAX_TOKENS, 1]
    assert torch.equal(padding, ids == 0)
    assert ids[2, 0].item() == vocab["<unk>"]  # an empty text keeps one <unk>
    assert ids[0, :3].tolist() == vocab(["stocks", "rise", "again"])


def padded_pair():
    short, long = torch.tensor([5, 6, 7]), torch.arange(10, 40)
    ids = nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    return ids, ids == 0, short


@pytest.mark.parametrize("name", ["fasttext", "transformer"])
def test_padding_does_not_change_a_texts_prediction(lesson, name):
    torch.manual_seed(0)
    model = {"fasttext": lesson.FastText, "transformer": lesson.TransformerClassifier}[name](50)
    ids, padding, short = padded_pair()
    with torch.no_grad():
        batch = model.eval()(ids, padding)
        alone = model(short[None], torch.zeros(1, 3, dtype=torch.bool))
    assert batch.shape == (2, 4)
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-5)


def test_fasttext_is_the_mean_of_the_real_word_embeddings(lesson):
    torch.manual_seed(0)
    model = lesson.FastText(20).eval()
    ids = torch.tensor([[3, 4, 5], [7, 0, 0]])
    table = model.embedding.weight
    means = torch.stack([table[[3, 4, 5]].mean(0), table[[7]].mean(0)])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, ids == 0), model.fc(means))


def test_the_classifier_is_built_from_torchs_encoder_layers(lesson):
    model = lesson.TransformerClassifier(100)
    layers = model.encoder.layers
    assert len(layers) == 2 and all(isinstance(x, nn.TransformerEncoderLayer) for x in layers)
    assert all(layer.norm_first for layer in layers)
    assert model.position.shape == (lesson.MAX_TOKENS, 32)


def test_attention_maps_reproduce_the_models_logits(lesson):
    torch.manual_seed(0)
    model = randomized(lesson.TransformerClassifier(60), seed=1)
    ids, padding, _ = padded_pair()
    logits, maps = lesson.attention_maps(model, ids, padding)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(ids, padding), atol=1e-5, rtol=1e-5)
    assert len(maps) == 2 and maps[0].shape == (4, 30, 30)  # the first text of the batch
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(4, 30))


@pytest.mark.parametrize("name", ["fasttext", "transformer"])
def test_the_training_loop_lowers_the_loss(lesson, name, one_thread):
    torch.manual_seed(0)
    model = {"fasttext": lesson.FastText, "transformer": lesson.TransformerClassifier}[name](50)
    generator, labels = torch.Generator().manual_seed(0), torch.arange(32) % 4
    lengths = torch.randint(3, 12, (32,), generator=generator)
    ids = torch.randint(0, 12, (32, 12), generator=generator) + 2 + 12 * labels[:, None]
    ids[torch.arange(12) >= lengths[:, None]] = 0  # each class has its own 12 words
    batches = [(labels, ids, ids == 0)]
    optimizer = torch.optim.AdamW(model.parameters(), **lesson.OPTIMIZERS[name])
    losses = [lesson.train_epoch(model, batches, nn.CrossEntropyLoss(), optimizer, "cpu")
              for _ in range(25)]  # fmt: skip
    assert losses[-1] < 0.5 * losses[0], losses
    assert (model.eval()(ids, ids == 0).argmax(1) == labels).float().mean() > 0.9


# --------------------------------------------------------------------------- runs
def test_the_quick_run(quick_run):
    run = quick_run(STEM)
    metrics = run.metrics
    assert "NOTICE: AG_NEWS" in run.printed and metrics["data_source"] == "stand-in"
    assert metrics["norms"] == NORMS
    assert all(value <= 1e-5 for value in metrics["layer_differences"].values())
    assert run.line("hand layer, norm_first=True, padding mask: max |difference| ")
    assert run.line("PE[p] . PE[p+k] for p = 0, 10, 20: ") == (
        "PE[p] . PE[p+k] for p = 0, 10, 20: k = 1 [30.917, 30.917, 30.917], "
        "k = 10 [21.052, 21.052, 21.052]"
    )
    for name in ("fasttext", "transformer"):
        loss = metrics[f"{name}_loss_history"]
        assert len(loss) == 2 and loss[1] < loss[0], name
        assert len(metrics[f"{name}_seconds_history"]) == 2
        assert metrics[f"{name}_accuracy"] == metrics[f"{name}_accuracy_history"][-1] > 0.4
        assert run.line(f"{name:>11}: test accuracy ")
    assert metrics["headline"] == "transformer_accuracy"
    assert "the hand-written copies give the same logits: True" in run.printed
    assert metrics["headline_topic"] in load_lesson(STEM).CLASSES
    for figure in ("positional_encoding.png", "attention_and_accuracy.png"):
        assert (run.out / figure).stat().st_size > 0


def test_a_bad_csv_stops_the_lesson_with_one_line(tmp_path):
    (tmp_path / "data" / "AG_NEWS").mkdir(parents=True)
    (tmp_path / "data" / "AG_NEWS" / "test.csv").write_text("a;b;c\n", encoding="utf-8")
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    assert "test.csv line 1: expected 3 columns" in one_line_error(result)


def test_stand_ins_are_refused_when_real_data_is_required(tmp_path):
    with pytest.raises(DataUnavailable, match="AG_NEWS"):
        run_script(STEM, tmp_path / "out", "--quick", "--data-dir", str(tmp_path),
                   env={"LESSONS_REQUIRE_REAL_DATA": "1"})  # fmt: skip


@pytest.mark.real_data
def test_real_split_brief_training(real_data_dir, tmp_path):
    """Two epochs on the real 6,000 / 1,600 split (the full run's eight reach the target)."""
    (tmp_path / "root" / "AG_NEWS").mkdir(parents=True)
    (tmp_path / "root" / "AG_NEWS" / "test.csv").symlink_to(real_data_dir / "AG_NEWS" / "test.csv")
    run = run_script(STEM, tmp_path / "out", "--data-dir", str(tmp_path / "root"), "--epochs", "2")
    metrics = run.metrics
    assert metrics["data_source"] == "AG_NEWS test.csv split 6000/1600"
    assert (metrics["train_rows"], metrics["test_rows"]) == (6000, 1600)
    assert metrics["vocab_size"] == 20_000
    assert metrics["fasttext_accuracy"] >= 0.75, metrics["fasttext_accuracy_history"]
    assert metrics["transformer_accuracy"] >= 0.60, metrics["transformer_accuracy_history"]
    assert metrics["headline_topic"] == "Business"  # oil prices and investors
