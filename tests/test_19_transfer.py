"""Lesson 19: freezing, fine-tuning groups, the rotation pretext, augmentation, the quick run and a
brief real-data check that pretraining (labelled or self-supervised) helps on few labels."""

from __future__ import annotations

import argparse

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

STEM = "19_transfer"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_keep_classes_and_few_labels(lesson):
    labels = torch.tensor([5, 0, 9, 7, 5, 3, 9, 6, 8, 7, 6, 8])
    images = torch.arange(12.0).view(12, 1, 1, 1)
    kept, relabelled = lesson.keep_classes(images, labels, lesson.TARGET_DIGITS)
    assert relabelled.tolist() == [0, 4, 2, 0, 4, 1, 3, 2, 1, 3]  # 5..9 -> 0..4, in order
    assert kept.flatten().tolist() == [0, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    many = torch.arange(1000) % 5
    chosen = lesson.few_labels(many, per_class=7, seed=3)
    assert len(chosen) == len(set(chosen.tolist())) == 35
    assert torch.bincount(many[chosen]).tolist() == [7] * 5
    assert torch.equal(chosen, lesson.few_labels(many, 7, seed=3))  # a seed gives the same draw
    assert not torch.equal(chosen, lesson.few_labels(many, 7, seed=4))


def test_rotation_labels_are_quarter_turns(lesson):
    torch.manual_seed(0)
    images = torch.rand(6, 1, 28, 28)
    turned, turns = lesson.all_rotations([(image,) for image in images])
    assert turned.shape == (24, 1, 28, 28) and turns.dtype == torch.long
    assert turns.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6
    for rotated, k, i in zip(turned, turns, list(range(6)) * 4):
        assert torch.equal(rotated, torch.rot90(images[i], int(k), dims=(1, 2)))
    assert torch.equal(turned[0], images[0]) and torch.equal(turned[12], images[0].flip(1, 2))
    # one quarter turn is counter-clockwise: the top row becomes the left column, read upwards
    assert torch.equal(turned[6][0, :, 0], images[0][0, 0].flip(0))
    assert len({tuple(view.flatten().tolist()) for view in turned[::6]}) == 4  # all different


def test_shapes_and_the_adaptive_pool(lesson):
    model = lesson.SmallCNN(5)
    assert model.body(torch.zeros(3, 1, 28, 28)).shape == (3, 32, 3, 3)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 5)
    assert model(torch.zeros(3, 1, 56, 56)).shape == (3, 5)  # any size: AdaptiveAvgPool2d(1)
    assert lesson.trainable(model.head) == 32 * 5 + 5
    assert lesson.pretext_model()(torch.zeros(2, 1, 28, 28)).shape == (2, 4)


def test_the_optimizers_of_the_three_ways(lesson):
    body = lesson.SmallCNN(5).body
    scratch, optimizer = lesson.transfer_model("scratch", body, 5)
    assert [group["lr"] for group in optimizer.param_groups] == [lesson.LEARNING_RATE]
    assert lesson.trainable(scratch) == sum(p.numel() for p in scratch.parameters())
    assert not torch.equal(scratch.body[0][0].weight, body[0][0].weight)  # new weights
    frozen, optimizer = lesson.transfer_model("frozen", body, 5)
    assert lesson.trainable(frozen) == 165
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == {
        id(p) for p in frozen.head.parameters()
    }
    tuned, optimizer = lesson.transfer_model("fine-tune", body, 5)
    assert torch.equal(tuned.body[0][0].weight, body[0][0].weight)  # a copy of the body...
    assert tuned.body[0][0].weight is not body[0][0].weight  # ...not the pretrained one itself
    body_group, head_group = optimizer.param_groups
    assert body_group["lr"] == pytest.approx(lesson.LEARNING_RATE / 3)
    assert head_group["lr"] == lesson.LEARNING_RATE
    assert len(body_group["params"]) == len(list(tuned.body.parameters()))


def test_a_frozen_body_stays_unchanged_while_the_head_learns(lesson, one_thread):
    torch.manual_seed(0)
    pretrained = lesson.SmallCNN(5).body
    batch = [(torch.randn(32, 1, 28, 28), torch.randint(5, (32,)))]
    model, optimizer = lesson.transfer_model("frozen", pretrained, 5)
    head_before = model.head[-1].weight.clone()
    losses = lesson.train(model, batch, optimizer, 20, "cpu", frozen_body=True)
    assert lesson.same_state(model.body, pretrained)  # weights and BatchNorm statistics
    assert not torch.equal(model.head[-1].weight, head_before)
    assert losses[-1] < losses[0]
    # requires_grad_(False) alone does not stop BatchNorm: in train mode its statistics move.
    leaky, optimizer = lesson.transfer_model("frozen", pretrained, 5)
    lesson.train(leaky, batch, optimizer, 1, "cpu", frozen_body=False)
    assert not lesson.same_state(leaky.body, pretrained)
    assert all(torch.equal(a, b) for a, b in zip(leaky.body.parameters(), pretrained.parameters()))


def test_training_lowers_the_loss_and_accuracy_counts_hits(lesson, one_thread):
    torch.manual_seed(0)
    images, labels = torch.randn(48, 1, 28, 28), torch.randint(5, (48,))
    model, optimizer = lesson.transfer_model("scratch", None, 5)
    losses = lesson.train(model, [(images, labels)], optimizer, 30, "cpu")
    assert losses[-1] < 0.3 * losses[0], losses
    model.eval()
    with torch.no_grad():
        expected = (model(images).argmax(1) == labels).float().mean().item()
    assert lesson.accuracy(model, images, labels, "cpu") == pytest.approx(expected)
    assert lesson.smoothed([4.0, 2.0, 3.0, 1.0], points=2) == [3.0, 2.0]


def test_augmentations_keep_the_image_format(lesson):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    for name, transform in lesson.augmentations().items():
        out = lesson.augment_each(transform, images)
        assert out.shape == images.shape and out.dtype == torch.uint8, name
    flip = lesson.augmentations()["flip (not a digit!)"]
    assert torch.equal(lesson.augment_each(flip, images), images.flip(-1))
    copies, crop = images[:1].repeat(8, 1, 1, 1), lesson.augmentations()["crop"]
    one_call = crop(copies)
    assert (one_call == one_call[0]).all()  # one call, one crop for the whole batch
    each = lesson.augment_each(crop, copies)
    assert not (each == each[0]).all()  # per image: crops of their own


def test_the_quick_run(quick_run):
    run = quick_run(STEM)
    metrics = run.metrics
    assert metrics["data"] == "stand-in" and metrics["headline"] == "fine_tune_accuracy"
    assert metrics["draws"] == 1 and metrics["labels_per_class"] == 5
    for name in ("scratch", "frozen", "fine_tune", "rotation_probe", "random_probe"):
        assert 0 <= metrics[f"{name}_accuracy"] <= 1
    assert metrics["fine_tune_gain"] == pytest.approx(
        metrics["fine_tune_accuracy"] - metrics["scratch_accuracy"]
    )
    assert list(metrics["per_draw"]) == ["scratch", "frozen", "fine-tune", "rotation probe",
                                         "random probe"]  # fmt: skip
    assert metrics["resnet18_weights"] == "random"  # offline: announced, not downloaded
    assert "NOTICE: resnet18 ImageNet weights unavailable (downloads are off)" in run.printed
    assert run.line("trainable parameters: ") == (
        "trainable parameters: {'scratch': 6165, 'frozen': 165, 'fine-tune': 6165}; the body is "
        "still as pretrained: {'frozen': True, 'fine-tune': False}"
    )
    assert "mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]" in run.printed
    line = run.line("resnet18 (random weights), ")
    assert "2,565 of 11,179,077 parameters trainable" in line
    assert "[2, 3, 224, 224] -> logits [2, 5]" in line
    assert line.endswith("the body has a gradient: False, the new fc: True")
    assert "pretext on 512 unlabelled images" in run.printed
    for figure in ("augmentations.png", "results.png"):
        assert (run.out / figure).stat().st_size > 0
    assert isinstance(run.globals["rotator"], nn.Module)


def test_bad_flags_are_argparse_errors(tmp_path):
    result = run_lesson_cli(STEM, "--labels-per-class", "0", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--labels-per-class" in result.stderr.strip().splitlines()[-1]


def test_impossible_sizes_are_one_line_errors(tmp_path):
    result = run_lesson_cli(STEM, "--quick", "--batch-size", "2", "--out", str(tmp_path))
    assert one_line_error(result) == "error: --batch-size 2: use at least 8"
    result = run_lesson_cli(STEM, "--quick", "--labels-per-class", "500", "--out", str(tmp_path))
    assert "--labels-per-class 500: some digit has fewer" in one_line_error(result)


def test_corrupt_data_is_a_one_line_error(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    line = one_line_error(result)
    assert "train-images-idx3-ubyte.gz" in line and "corrupt" in line


@pytest.mark.real_data
def test_pretraining_on_real_digits(lesson, real_data_dir, one_thread):
    """Brief versions on real MNIST: ~15,000 digits 0-4 to pretrain on, 5 labels per class of
    5-9; the rotation pretext on 8,000 unlabelled images. (The probe comparison needs the full
    pretext run: it is the full run's target, not this test's.)"""
    torch.manual_seed(0)
    args = argparse.Namespace(data_dir=real_data_dir, offline=True)
    pixels, digits = lesson.load_split(args, train=True, limit=30_000)
    test_pixels, test_digits = lesson.load_split(args, train=False, limit=3000)
    mean, std = pixels.mean(), pixels.std()
    images, test_images = (pixels - mean) / std, (test_pixels - mean) / std
    source = lesson.keep_classes(images, digits, lesson.SOURCE_DIGITS)
    target_x, target_y = lesson.keep_classes(images, digits, lesson.TARGET_DIGITS)
    test = lesson.keep_classes(test_images, test_digits, lesson.TARGET_DIGITS)
    chosen = lesson.few_labels(target_y, per_class=5, seed=0)
    few = target_x[chosen], target_y[chosen]
    loader = DataLoader(TensorDataset(*source), 128, shuffle=True, drop_last=True)
    model = lesson.SmallCNN(5)
    optimizer = torch.optim.Adam(model.parameters(), lr=lesson.LEARNING_RATE)
    losses = lesson.train(model, loader, optimizer, 1, "cpu")
    assert sum(losses[-20:]) < 0.3 * sum(losses[:20])
    assert lesson.accuracy(model, *lesson.keep_classes(test_images, test_digits, [0, 1, 2, 3, 4]),
                           "cpu") > 0.95  # fmt: skip
    scores = {way: lesson.few_label_run(way, model.body, few, test, 200, "cpu")[0]
              for way in ("scratch", "fine-tune")}  # fmt: skip
    assert scores["fine-tune"] > 0.75 and scores["fine-tune"] > scores["scratch"] + 0.05, scores
    rotator = lesson.pretext_model()
    optimizer = torch.optim.Adam(rotator.parameters(), lr=lesson.LEARNING_RATE)
    loader = DataLoader(TensorDataset(images[:8000]), 32, shuffle=True, drop_last=True,
                        collate_fn=lesson.all_rotations)  # fmt: skip
    losses = lesson.train(rotator, loader, optimizer, 1, "cpu")
    assert sum(losses[-20:]) / 20 < 0.3 * sum(losses[:20]) / 20
    turned, turns = lesson.all_rotations([(image,) for image in test_images[:1000]])
    assert lesson.accuracy(rotator, turned, turns, "cpu") > 0.9  # how far each digit was turned
