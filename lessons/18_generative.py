"""Autoencoders and GANs: squeeze images through 3 numbers, then generate digits from noise.

What you will learn: the notes' autoencoder 784 -> 128 -> 3 -> 128 -> 784 on FashionMNIST
(reconstructions, 3-D codes by class, test MSE next to the mean image's); a GAN on MNIST
(generator vs discriminator, `BCEWithLogitsLoss`, the alternating updates, the non-saturating
generator loss, samples of one fixed noise batch after every epoch, both losses plotted);
judging 1,000 generated digits with an MNIST classifier trained in the same run.
How to run: python lessons/18_generative.py [--quick] [--epochs 6, a longer GAN] [--seed 1]
Figures, sample grids and metrics.json go to outputs/18_generative/.

Time: --quick ~10 s, full ~4 min on a 2-core CPU.
"""

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.datasets import FashionMNIST
from torchvision.utils import make_grid, save_image

from common.cli import lesson_args, positive_int
from common.data import vision_dataset
from common.report import progress, save_figure, write_metrics

Z_SIZE, WIDTH = 64, 16  # the generator's noise numbers; the GAN's channels (doubled inside)
AE_EPOCHS, JUDGE_EPOCHS = 3, 2  # the autoencoder's and the judge's; --epochs is the GAN's


def configure(parser) -> None:
    parser.add_argument("--train-images", type=positive_int, default=None,
                        help="the first N training images (default all; --quick 512)")  # fmt: skip


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="18_generative", configure=configure, epochs=3,
                       batch_size=64, threads=1)  # fmt: skip
    device = args.device
    ae_epochs, gan_epochs = (2, 2) if args.quick else (AE_EPOCHS, args.epochs)
    shuffle = torch.Generator().manual_seed(args.seed)  # the same batch order on every run
    started = time.perf_counter()

# %% [markdown]
# ## 1. The data, as one tensor per split
# Every model here reads the training images several times, so each split is converted
# **once**: torchvision keeps it as one uint8 tensor (`dataset.data`, N×28×28); as floats in
# $[0, 1]$ a split of 60,000 images takes 188 MB, and an epoch only slices it (as in lesson 06).


# %%
def load_split(name: str, args, train: bool, limit: int | None = None) -> TensorDataset:
    """A split as (N x 1 x 28 x 28 floats in [0, 1], labels)."""
    dataset = vision_dataset(name, args, train=train)
    images = dataset.data[:limit].unsqueeze(1).float() / 255  # add the channel dimension
    return TensorDataset(images, torch.as_tensor(dataset.targets[:limit]))


if __name__ == "__main__":
    train_limit = args.train_images or (512 if args.quick else None)  # None: every image
    test_limit = 500 if args.quick else None
    fashion_train = load_split("FashionMNIST", args, train=True, limit=train_limit)
    fashion_test = load_split("FashionMNIST", args, train=False, limit=test_limit)
    mnist_train = load_split("MNIST", args, train=True, limit=train_limit)
    mnist_test = load_split("MNIST", args, train=False, limit=test_limit)
    print(f"training images: {len(fashion_train):,} FashionMNIST, {len(mnist_train):,} MNIST")

# %% [markdown]
# ## 2. An autoencoder: the image is its own label
# The encoder squeezes 784 pixels into a **code** of 3 numbers; the decoder rebuilds the image
# from the code alone. Training asks for $\hat x = \text{decoder}(\text{encoder}(x))$ close to
# $x$ in mean squared error, $\frac{1}{784}\sum_i (\hat x_i - x_i)^2$, so the dataset pairs each
# image with itself: no labels, the data supervises itself (the loop is lesson 06's). Three
# numbers cannot hold every pixel: the network must find the few ways in which clothes differ
# most. The yardstick: always answering with the mean training image. Below, test images over
# their blurred reconstructions, and each test image's code as a point in 3-D, coloured by a
# class the autoencoder was never told: similar clothes still land near each other.


# %%
class AutoEncoder(nn.Module):
    """The notes' autoencoder: 784 -> 128 -> 3 (the code) -> 128 -> 784."""

    def __init__(self, code_size: int = 3):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(),
                                     nn.Linear(128, code_size))  # fmt: skip
        self.decoder = nn.Sequential(nn.Linear(code_size, 128), nn.ReLU(), nn.Linear(128, 784),
                                     nn.Unflatten(1, (1, 28, 28)))  # fmt: skip

    # The notes (a PyTorch Lightning example) compute the loss in forward(batch, batch_idx);
    # Lightning calls that method training_step. Here forward returns the reconstruction.
    def forward(self, x):
        return self.decoder(self.encoder(x))


def train_epoch(model, loader, loss_fn, optimizer, device) -> float:
    """One pass over (input, target) batches; returns the mean training loss."""
    model.train()
    total = 0.0
    for X, y in progress(loader, desc="training"):
        X, y = X.to(device), y.to(device)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)


if __name__ == "__main__":
    autoencoder = AutoEncoder().to(device)
    ae_optimizer = torch.optim.Adam(autoencoder.parameters(), lr=1e-3)
    train_images, test_images = fashion_train.tensors[0], fashion_test.tensors[0]
    pairs = TensorDataset(train_images, train_images)  # (input, target): the same images
    ae_loader = DataLoader(pairs, 128, shuffle=True, generator=shuffle)
    ae_losses = []
    for epoch in range(1, ae_epochs + 1):
        ae_losses.append(train_epoch(autoencoder, ae_loader, nn.MSELoss(), ae_optimizer, device))
        print(f"autoencoder epoch {epoch}: train MSE {ae_losses[-1]:.4f}")

    autoencoder.eval()
    with torch.no_grad():
        codes = autoencoder.encoder(test_images.to(device)).cpu()
        reconstructions = autoencoder.decoder(codes.to(device)).cpu()
    ae_test_mse = nn.functional.mse_loss(reconstructions, test_images).item()
    mean_image = train_images.mean(0)  # 1 x 28 x 28, from the training images only
    mean_image_mse = nn.functional.mse_loss(mean_image.expand_as(test_images), test_images).item()
    print(f"codes {list(codes.shape)}, reconstructions {list(reconstructions.shape)}; test MSE: "
          f"autoencoder {ae_test_mse:.4f}, always the mean image {mean_image_mse:.4f} "
          f"(ratio {ae_test_mse / mean_image_mse:.2f})")  # fmt: skip
    fig = plt.figure(figsize=(13, 4.5))
    left, right = fig.add_subplot(1, 5, (1, 3)), fig.add_subplot(1, 5, (4, 5), projection="3d")
    shown = [x[i : i + 10] for i in (0, 10) for x in (test_images, reconstructions)]  # 4 rows
    grid = make_grid(torch.cat(shown).clamp(0, 1), nrow=10, pad_value=1)[0]
    left.imshow(grid.numpy(), cmap="gray")  # matplotlib takes NumPy arrays, not tensors
    left.set(title="test images, each row over its reconstructions", xticks=[], yticks=[])
    points = right.scatter(*codes[:3000].T.numpy(), c=fashion_test.tensors[1][:3000].numpy(),
                           cmap="tab10", s=3)  # fmt: skip
    right.legend(points.legend_elements()[0], FashionMNIST.classes, fontsize=6, loc="upper left")
    right.set(title="3-D codes of test images", xlabel="code 1", ylabel="code 2", zlabel="code 3")
    save_figure(fig, args.out / "autoencoder.png")

# %% [markdown]
# ## 3. A GAN: a forger and a detective
# The **generator** $G$ turns 64 random normal numbers $z$ into an image; the **discriminator**
# $D$ gives the probability that an image is real. They play one game,
# $$\min_G \max_D \; \mathbb{E}_x[\log D(x)] + \mathbb{E}_z[\log(1 - D(G(z)))] ,$$
# $D$ by telling real from fake, $G$ (through $D$'s gradients) by making fakes $D$ takes for
# real. Both are tiny convolutional networks (a small DCGAN): `ConvTranspose2d` with stride 2
# doubles an image's side (7 → 14 → 28) in $G$ and a 3×3 convolution draws the image from 16
# maps; `Conv2d` with stride 2 halves the side in $D$. $G$ ends in `tanh`, so real images are
# rescaled to $[-1, 1]$ too; $D$ ends in one logit.


# %%
def make_generator(z_size: int = Z_SIZE, width: int = WIDTH) -> nn.Sequential:
    """Noise (N x 64) -> 32 x 7 x 7 -> 16 x 14 x 14 -> 16 x 28 x 28 -> 1 x 28 x 28 in [-1, 1]."""
    return nn.Sequential(
        nn.Linear(z_size, 2 * width * 7 * 7), nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),  # 7 -> 14
        nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),  # 14 -> 28
        nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 1, 3, padding=1), nn.Tanh(),  # 16 maps -> one image
    )  # fmt: skip


def make_discriminator(width: int = WIDTH) -> nn.Sequential:
    """1 x 28 x 28 -> 16 x 14 x 14 -> 32 x 7 x 7 -> one logit, positive for "real"."""
    return nn.Sequential(
        nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # 28 -> 14
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),  # 14 -> 7
        nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1),
    )  # fmt: skip


if __name__ == "__main__":
    generator, discriminator = make_generator().to(device), make_discriminator().to(device)
    untrained_generator = copy.deepcopy(generator)  # judged next to the trained one, later
    z = torch.randn(16, Z_SIZE, device=device)
    print(f"G: noise {list(z.shape)} -> images {list(generator(z).shape)}; "
          f"D: images -> logits {list(discriminator(generator(z)).shape)}")  # fmt: skip

# %% [markdown]
# ## 4. The losses, and why the generator's is flipped
# `BCEWithLogitsLoss` is the binary cross-entropy $-[y \log \sigma(\ell) + (1-y)\log(1 -
# \sigma(\ell))]$ of a logit $\ell$, computed in a numerically safe way. $D$ minimizes
# $\text{BCE}(D(x), 1) + \text{BCE}(D(G(z)), 0)$: the game's objective, sign flipped. $G$ should
# minimize $\log(1 - D(G(z)))$, but early on $D$ spots every fake, $D(G(z)) \approx 0$, where
# that curve is flat: its slope in $\ell$ is $-\sigma(\ell) \approx 0$. So $G$ minimizes
# $-\log D(G(z)) = \text{BCE}(D(G(z)), 1)$ instead, the *non-saturating* loss: the same aim,
# with slope $-(1 - \sigma(\ell)) \approx -1$ exactly where $G$ is worst. At $D(G(z)) = 0.01$:


# %%
def generator_loss_slopes(d_of_fake: float = 0.01) -> dict[str, float]:
    """Both generator losses, and their slopes in D's logit (autograd), at D(G(z)) = d_of_fake."""
    logit = torch.logit(torch.tensor(d_of_fake)).requires_grad_()
    saturating = torch.log(1 - torch.sigmoid(logit))  # the game's own log(1 - D(G(z)))
    non_saturating = nn.BCEWithLogitsLoss()(logit, torch.tensor(1.0))  # -log D(G(z))
    values = {"log(1 - D(G(z)))": saturating,
              "slope of log(1 - D(G(z)))": torch.autograd.grad(saturating, logit)[0],
              "-log D(G(z)) = BCEWithLogitsLoss(logit, 1)": non_saturating,
              "-log D(G(z)) by hand": -torch.log(torch.sigmoid(logit)),
              "slope of -log D(G(z))": torch.autograd.grad(non_saturating, logit)[0]}  # fmt: skip
    return {label: round(value.item(), 4) for label, value in values.items()}


if __name__ == "__main__":
    loss_slopes = generator_loss_slopes()
    for label, value in loss_slopes.items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 5. Training: the two updates, in turn
# Each batch is one round. First $D$: real images should score 1, fresh fakes 0; `fake.detach()`
# cuts the fakes off from $G$, so this step changes $D$ only. Then $G$: the same fakes, not
# detached, should score 1; the gradient flows back through $D$ into $G$, and only $G$'s
# optimizer steps ($D$'s next `zero_grad` clears what this leaves in its `.grad`). Adam with
# $\beta_1 = 0.5$ is the DCGAN recipe; lr $5 \cdot 10^{-4}$, above its $2 \cdot 10^{-4}$, gets
# digits in fewer epochs. One **fixed** noise batch becomes a grid after each epoch.


# %%
def gan_step(generator, discriminator, real, g_optimizer, d_optimizer, loss_fn, device):
    """One round on a batch of real images, a step of D then a step of G: (D loss, G loss)."""
    real = real.to(device)
    ones = torch.ones(len(real), 1, device=device)
    zeros = torch.zeros(len(real), 1, device=device)
    fake = generator(torch.randn(len(real), Z_SIZE, device=device))
    d_loss = loss_fn(discriminator(real), ones) + loss_fn(discriminator(fake.detach()), zeros)
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    g_loss = loss_fn(discriminator(fake), ones)  # the non-saturating loss, -log D(G(z))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    return d_loss.item(), g_loss.item()


def samples_of(generator, noise) -> torch.Tensor:
    """The generator's images of `noise`, in eval mode (BatchNorm uses its running averages)."""
    with torch.no_grad():
        images = generator.eval()(noise).cpu()
    generator.train()
    return images


if __name__ == "__main__":
    mnist_gan = TensorDataset(mnist_train.tensors[0] * 2 - 1, mnist_train.tensors[1])  # [-1, 1]
    gan_loader = DataLoader(mnist_gan, args.batch_size, shuffle=True, drop_last=True,
                            generator=shuffle)  # fmt: skip
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=5e-4, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=5e-4, betas=(0.5, 0.999))
    fixed_noise = torch.randn(64, Z_SIZE, device=device)
    step_losses, gan_history, grids = [], [], []  # (D loss, G loss) per step and per epoch
    print(f"{gan_epochs} epochs of {len(gan_loader)} batches of {args.batch_size}")
    for epoch in range(1, gan_epochs + 1):
        for real, _ in progress(gan_loader, desc=f"GAN epoch {epoch}"):
            step_losses.append(gan_step(generator, discriminator, real, g_optimizer, d_optimizer,
                                        nn.BCEWithLogitsLoss(), device))  # fmt: skip
        gan_history.append(torch.tensor(step_losses[-len(gan_loader) :]).mean(0).tolist())
        samples, path = samples_of(generator, fixed_noise), args.out / f"gan_epoch_{epoch:02d}.png"
        save_image(samples, path, nrow=8, normalize=True, value_range=(-1, 1))
        grids.append(make_grid(samples, nrow=8, normalize=True, value_range=(-1, 1)))
        print(f"epoch {epoch}: D loss {gan_history[-1][0]:.3f}, G loss {gan_history[-1][1]:.3f}, "
              f"samples of the fixed noise in {path.name}")  # fmt: skip
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.4), squeeze=False)
    for epoch, (ax, grid) in enumerate(zip(axes[0], grids), start=1):
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set(title=f"after epoch {epoch}", xticks=[], yticks=[])
    save_figure(fig, args.out / "gan_samples.png")

# %% [markdown]
# ## 6. A judge: an MNIST classifier, trained here
# A GAN has no test accuracy. A common stand-in (the idea of the *Inception Score*) asks a
# classifier: good samples get **confident** answers (a high top-class probability), and a
# generator that covers the data gets **every** class about as often as the data has it. The
# judge, a small CNN, trains for two epochs with `train_epoch` on the same $[-1, 1]$ images.


# %%
def make_judge() -> nn.Sequential:
    """A small MNIST classifier: two 5x5 conv + pool blocks (8, 16 channels), then Linear."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 8 x 14 x 14
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 7 x 7
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )  # fmt: skip


def judge_images(judge, images, device) -> dict:
    """The judge on `images` in [-1, 1]: its mean top-class probability, the share of each digit."""
    judge.eval()
    with torch.no_grad():
        probabilities = judge(images.to(device)).softmax(dim=1).cpu()
    shares = torch.bincount(probabilities.argmax(1), minlength=10) / len(images)
    return {"mean_top_probability": probabilities.max(1).values.mean().item(),
            "digit_shares": [round(share, 3) for share in shares.tolist()]}  # fmt: skip


if __name__ == "__main__":
    judge = make_judge().to(device)
    judge_loader = DataLoader(mnist_gan, 64, shuffle=True, generator=shuffle)
    judge_optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    judge_losses = [train_epoch(judge, judge_loader, nn.CrossEntropyLoss(), judge_optimizer,
                                device) for _ in range(JUDGE_EPOCHS)]  # fmt: skip
    test_digits, test_labels = mnist_test.tensors[0] * 2 - 1, mnist_test.tensors[1]
    with torch.no_grad():
        predicted = judge.eval()(test_digits.to(device)).argmax(1).cpu()
    judge_accuracy = (predicted == test_labels).float().mean().item()
    print(f"judge: train loss per epoch {[round(loss, 4) for loss in judge_losses]}, "
          f"test accuracy {judge_accuracy:.4f}")  # fmt: skip

# %% [markdown]
# ## 7. The verdict on 1,000 generated digits
# Real test digits show the best answer possible; the untrained copy of $G$ kept in section 3
# shows what noise gets. A share near 10 % for every digit means no digit was forgotten: a GAN
# that has *collapsed* onto a few favourite digits fails here, however good they look. The two
# losses do not fall together as a classifier's does: they score two players of one game. $D$'s
# below $2 \ln 2 \approx 1.39$ with $G$'s finite means neither has won; a $D$ loss stuck at 0
# would mean $G$ no longer learns anything.

# %%
if __name__ == "__main__":
    noise = torch.randn(1000, Z_SIZE, device=device)
    verdicts = {
        "real test digits": judge_images(judge, test_digits[:1000], device),
        "untrained generator": judge_images(judge, samples_of(untrained_generator, noise), device),
        "trained generator": judge_images(judge, samples_of(generator, noise), device),
    }
    for label, verdict in verdicts.items():
        shares = " ".join(f"{round(100 * share):2d}" for share in verdict["digit_shares"])
        print(f"{label:>19}: mean top-class probability {verdict['mean_top_probability']:.3f}, "
              f"% of each digit 0-9: {shares}")  # fmt: skip
    gan_verdict = verdicts["trained generator"]
    digits_covered = sum(share >= 0.03 for share in gan_verdict["digit_shares"])
    print(f"digits with at least 3 % of the generated samples: {digits_covered} of 10")

    fig, ax = plt.subplots(figsize=(7, 3.8))
    window = max(len(step_losses) // 50, 1)  # a running mean over 2 % of the steps
    running = torch.tensor(step_losses).unfold(0, window, 1).mean(-1)  # steps x (D, G)
    ax.plot(range(window, len(step_losses) + 1), running.numpy(), label=["D loss", "G loss"])
    ax.axhline(2 * math.log(2), color="grey", ls=":", label="2 ln 2, a coin toss's D loss")
    ax.set(xlabel="step", ylabel="BCE", title=f"GAN losses (running mean of {window} steps)")
    ax.legend()
    save_figure(fig, args.out / "gan_losses.png")

    metrics = {
        "gan_mean_top_probability": gan_verdict["mean_top_probability"],
        "gan_digits_at_least_3_percent": digits_covered, "verdicts": verdicts,
        "judge_test_accuracy": judge_accuracy, "judge_losses": judge_losses,
        "ae_test_mse": ae_test_mse, "mean_image_mse": mean_image_mse,
        "ae_mse_ratio": ae_test_mse / mean_image_mse, "ae_loss_history": ae_losses,
        "ae_epochs": ae_epochs, "gan_epochs": gan_epochs, "gan_d_and_g_loss_per_epoch": gan_history,
        "generator_loss_slopes": loss_slopes, "wall_seconds": time.perf_counter() - started,
    }  # fmt: skip
    print(f"autoencoder MSE {metrics['ae_mse_ratio']:.2f} x the mean image's | GAN: mean top-class"
          f" probability {gan_verdict['mean_top_probability']:.3f}, {digits_covered} digits >= 3 %"
          f" | {metrics['wall_seconds']:.0f} s in all")  # fmt: skip
    write_metrics(args.out, metrics, headline="gan_mean_top_probability")
