"""Lesson 18: the autoencoder, the GAN's networks, losses and updates, the judge, the runs."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import load_lesson, run_lesson_cli, run_script
from torch import nn

STEM = "18_generative"
SLOPES = {  # both generator losses where D(G(z)) = 0.01
    "log(1 - D(G(z)))": -0.0101,
    "slope of log(1 - D(G(z)))": -0.01,
    "-log D(G(z)) = BCEWithLogitsLoss(logit, 1)": 4.6052,
    "-log D(G(z)) by hand": 4.6052,
    "slope of -log D(G(z))": -0.99,
}


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_the_autoencoder_squeezes_images_through_three_numbers(lesson):
    torch.manual_seed(0)
    model, images = lesson.AutoEncoder(), torch.rand(5, 1, 28, 28)
    assert model.encoder(images).shape == (5, 3)
    assert model(images).shape == (5, 1, 28, 28)
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (784, 128), (128, 3), (3, 128), (128, 784),
    ]  # fmt: skip
    torch.testing.assert_close(model(images), model.decoder(model.encoder(images)))


def test_the_training_loop_lowers_the_reconstruction_error(lesson, one_thread):
    """The lesson's train_epoch on (image, image) pairs: the target is the input itself."""
    torch.manual_seed(0)
    images = torch.rand(64, 1, 28, 28).round()  # sharp black-and-white images
    model, batches = lesson.AutoEncoder(), [(images, images)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = [lesson.train_epoch(model, batches, nn.MSELoss(), optimizer, "cpu") for _ in range(40)]
    assert losses[-1] < 0.6 * losses[0], losses


def test_the_gan_networks_shapes_and_ranges(lesson):
    torch.manual_seed(0)
    generator, discriminator = lesson.make_generator(), lesson.make_discriminator()
    images = generator(torch.randn(8, lesson.Z_SIZE))
    assert images.shape == (8, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1  # tanh: the range real images are moved to
    assert discriminator(images).shape == (8, 1)
    assert lesson.make_judge()(images).shape == (8, 10)
    last = list(generator)[-2:]  # a 3x3 convolution draws the image from 16 maps, then tanh
    assert (
        isinstance(last[0], nn.Conv2d)
        and last[0].in_channels == 16
        and last[0].kernel_size == (3, 3)
    )
    assert isinstance(last[1], nn.Tanh)


def test_the_generator_loss_slopes(lesson):
    slopes = lesson.generator_loss_slopes()
    assert slopes == SLOPES
    # Anywhere, the slopes are -sigma(logit) and -(1 - sigma(logit)).
    d_of_fake = 0.3
    slopes = lesson.generator_loss_slopes(d_of_fake)
    assert slopes["slope of log(1 - D(G(z)))"] == pytest.approx(-d_of_fake, abs=1e-4)
    assert slopes["slope of -log D(G(z))"] == pytest.approx(-(1 - d_of_fake), abs=1e-4)
    assert slopes["-log D(G(z)) by hand"] == pytest.approx(-math.log(d_of_fake), abs=1e-4)


def discriminator_loss(lesson, discriminator, real, fake):
    """D's loss on fixed real and fake batches, as gan_step computes it."""
    loss_fn, n = nn.BCEWithLogitsLoss(), len(real)
    with torch.no_grad():
        return (loss_fn(discriminator(real), torch.ones(n, 1))
                + loss_fn(discriminator(fake), torch.zeros(n, 1))).item()  # fmt: skip


def test_gan_steps_teach_the_discriminator_and_move_only_the_right_nets(lesson, one_thread):
    torch.manual_seed(0)
    generator, discriminator = lesson.make_generator(), lesson.make_discriminator()
    real = torch.rand(32, 1, 28, 28) * 2 - 1
    with torch.no_grad():  # fakes like those gan_step draws: G in training mode, which stays put
        fake = generator(torch.randn(32, lesson.Z_SIZE))
    frozen = torch.optim.SGD(generator.parameters(), lr=0.0)  # G does not move
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=5e-4, betas=(0.5, 0.999))
    before = discriminator_loss(lesson, discriminator, real, fake)  # batch statistics
    g_weights = [p.clone() for p in generator.parameters()]
    results = [lesson.gan_step(generator, discriminator, real, frozen, d_optimizer,
                               nn.BCEWithLogitsLoss(), "cpu") for _ in range(10)]  # fmt: skip
    assert all(len(result) == 2 and all(math.isfinite(v) for v in result) for result in results)
    assert results[-1][0] < results[0][0]  # D's own loss, as gan_step reports it
    assert discriminator_loss(lesson, discriminator, real, fake) < 0.5 * before
    assert all(torch.equal(a, b) for a, b in zip(g_weights, generator.parameters()))


def test_gan_steps_teach_the_generator_against_a_fixed_discriminator(lesson, one_thread):
    """With D frozen, G's steps raise D's opinion of its fakes: the gradient flows through D."""
    torch.manual_seed(0)
    generator, discriminator = lesson.make_generator(), lesson.make_discriminator()
    real = torch.rand(32, 1, 28, 28) * 2 - 1
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=5e-4, betas=(0.5, 0.999))
    frozen = torch.optim.SGD(discriminator.parameters(), lr=0.0)
    d_weights = [p.clone() for p in discriminator.parameters()]
    g_losses = [lesson.gan_step(generator, discriminator, real, g_optimizer, frozen,
                                nn.BCEWithLogitsLoss(), "cpu")[1] for _ in range(15)]  # fmt: skip
    assert sum(g_losses[-3:]) < sum(g_losses[:3]), g_losses
    assert all(torch.equal(a, b) for a, b in zip(d_weights, discriminator.parameters()))


def test_samples_are_drawn_in_eval_mode_and_leave_training_mode_on(lesson):
    torch.manual_seed(0)
    generator, noise = lesson.make_generator(), torch.randn(4, lesson.Z_SIZE)
    first = lesson.samples_of(generator, noise)
    assert generator.training and not first.requires_grad
    torch.testing.assert_close(first, lesson.samples_of(generator, noise))  # no batch statistics
    torch.testing.assert_close(first[:1], lesson.samples_of(generator, noise[:1]))


class FixedAnswers(nn.Module):
    """A 'judge' that gives image i the logits `logits[i]`."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, images):
        return self.logits[: len(images)]


def test_judge_images_counts_shares_and_mean_confidence(lesson):
    logits = torch.full((4, 10), -100.0)
    for image, digit in enumerate([3, 3, 7, 0]):
        logits[image, digit] = 100.0  # certain
    logits[3] = 0.0  # image 3: all ten classes equally likely, argmax 0
    verdict = lesson.judge_images(FixedAnswers(logits), torch.zeros(4, 1, 28, 28), "cpu")
    assert verdict["digit_shares"] == [0.25, 0, 0, 0.5, 0, 0, 0, 0.25, 0, 0]
    assert verdict["mean_top_probability"] == pytest.approx((3 + 0.1) / 4)


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    metrics, values = run.metrics, run.globals
    assert "NOTICE: FashionMNIST" in run.printed and "NOTICE: MNIST" in run.printed
    assert metrics["data"] == "stand-in" and metrics["headline"] == "gan_mean_top_probability"
    assert values["codes"].shape == (500, 3)
    assert values["reconstructions"].shape == (500, 1, 28, 28)
    assert len(metrics["ae_loss_history"]) == len(metrics["judge_losses"]) == 2
    assert metrics["ae_loss_history"][1] < metrics["ae_loss_history"][0]
    assert metrics["ae_mse_ratio"] == pytest.approx(
        metrics["ae_test_mse"] / metrics["mean_image_mse"]
    )
    steps = values["step_losses"]  # (D loss, G loss) of every step
    assert len(steps) == 2 * len(values["gan_loader"]) == 2 * 8  # drop_last: 512 // 64 batches
    per_epoch = torch.tensor(steps).view(2, 8, 2).mean(1)
    torch.testing.assert_close(torch.tensor(metrics["gan_d_and_g_loss_per_epoch"]), per_epoch)
    assert metrics["generator_loss_slopes"] == SLOPES
    for label, value in SLOPES.items():
        assert run.line(f"{label}: ") == f"{label}: {value}"
    verdicts = metrics["verdicts"]
    assert set(verdicts) == {"real test digits", "untrained generator", "trained generator"}
    for verdict in verdicts.values():
        assert sum(verdict["digit_shares"]) == pytest.approx(1, abs=0.006)
        assert 0.1 <= verdict["mean_top_probability"] <= 1
    assert (
        metrics["gan_mean_top_probability"] == verdicts["trained generator"]["mean_top_probability"]
    )
    assert run.line("digits with at least 3 % ").endswith(
        f"{metrics['gan_digits_at_least_3_percent']} of 10"
    )
    for name in ["autoencoder.png", "gan_samples.png", "gan_losses.png", "gan_epoch_01.png",
                 "gan_epoch_02.png"]:  # fmt: skip
        assert (run.out / name).stat().st_size > 0, name


def test_a_bad_image_count_is_a_one_line_usage_error(tmp_path):
    result = run_lesson_cli(STEM, "--train-images", "0", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--train-images" in result.stderr


@pytest.mark.real_data
def test_brief_training_on_the_real_data(real_data_dir, tmp_path):
    """The first 12,800 training images, one GAN epoch, scored on the real test splits."""
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir), "--epochs", "1",
                     "--train-images", "12800")  # fmt: skip
    metrics = run.metrics
    assert "NOTICE" not in run.printed and "data" not in metrics
    # The test pixels' variance around the mean of the first 12,800 training images.
    assert metrics["mean_image_mse"] == pytest.approx(0.08665, abs=1e-4)
    assert metrics["ae_mse_ratio"] <= 0.5, metrics["ae_mse_ratio"]
    assert metrics["judge_test_accuracy"] >= 0.90
    verdicts = metrics["verdicts"]
    assert verdicts["real test digits"]["mean_top_probability"] >= 0.85
    # 200 GAN steps already make the judge surer than of the untrained generator's noise.
    assert (verdicts["trained generator"]["mean_top_probability"]
            > verdicts["untrained generator"]["mean_top_probability"])  # fmt: skip
