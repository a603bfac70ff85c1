"""Convolutional networks: convolution and pooling by hand, layer shapes, a CNN on FashionMNIST.

What you will learn
  - the output-size formula of a convolution (padding, stride, dilation), checked on real layers
  - convolution with `F.conv2d` on small hand-made inputs: no padding, padding 1, stride 2
  - max pooling, and what `ceil_mode` does with a window that hangs over the edge
  - the shapes of `nn.Conv2d` outputs and weights; a `nn.Sequential` conv net from input to logits
  - a CNN (conv 32 -> conv 64, 3x3, padding 1, max pools, 64*7*7 -> 512 -> 10) trained with Adam
    on FashionMNIST (default) or MNIST (`--dataset mnist`) and scored on the test split

How to run
    python lessons/07_cnn.py                    # FashionMNIST, 4 epochs
    python lessons/07_cnn.py --dataset mnist    # MNIST
    python lessons/07_cnn.py --quick            # a few batches, seconds
    python lessons/07_cnn.py --epochs 1 --train-images 10000   # a fast experiment
Data comes from the data root (torchvision layout, downloaded when missing and allowed; offline, a
synthetic stand-in). Plots and metrics.json go to outputs/07_cnn/.

Time: --quick ~6 s, full ~2 min on a 2-core CPU (test accuracy about 0.92 FashionMNIST, 0.99 MNIST).
"""

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.cli import lesson_args, positive_float, positive_int
from common.data import vision_dataset
from common.report import progress, save_figure, write_metrics

DATASETS = {"fashion": "FashionMNIST", "mnist": "MNIST"}


def configure(parser) -> None:
    parser.add_argument("--dataset", choices=list(DATASETS), default="fashion",
                        help="fashion (FashionMNIST, default) or mnist")  # fmt: skip
    parser.add_argument("--train-images", type=positive_int, default=None,
                        help="train on the first N images (default all; --quick 512)")  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="07_cnn", configure=configure, epochs=4, batch_size=128)
    device = args.device
    started = time.perf_counter()

# %% [markdown]
# ## 1. How big is the output of a convolution?
# A kernel of size $k$ slides along a side of $n$ pixels, padded by $p$ zeros on each end, moving
# $s$ pixels per step; dilation $d$ spreads the kernel's taps $d$ pixels apart. The number of
# positions it fits is
# $$\text{out} = \left\lfloor \frac{n + 2p - d(k-1) - 1}{s} \right\rfloor + 1 .$$
# With $k=3, p=1, s=1$ the size stays the same: that is why the CNN below pads by 1.


# %%
def conv_output_size(n: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1):
    """How many window positions fit along one side (the formula above)."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_sizes() -> list[tuple[tuple, int, int]]:
    """((n, k, p, s, d), the formula's size, the size nn.Conv2d really gives) for a few layers."""
    rows = []
    for n, k, p, s, d in [(28, 3, 1, 1, 1), (28, 5, 0, 1, 1), (32, 3, 1, 2, 1), (100, 3, 0, 1, 2)]:
        layer = nn.Conv2d(1, 1, k, padding=p, stride=s, dilation=d)
        rows.append(
            (
                (n, k, p, s, d),
                conv_output_size(n, k, p, s, d),
                layer(torch.zeros(1, 1, n, n)).shape[-1],
            )
        )
    return rows


if __name__ == "__main__":
    for (n, k, p, s, d), formula, real in output_sizes():
        print(f"n={n:3d} k={k} p={p} s={s} d={d}: formula {formula:3d}, nn.Conv2d gives {real:3d}")

# %% [markdown]
# ## 2. Convolution on numbers you can check by hand
# `F.conv2d` multiplies the kernel with each window element by element and sums. (It computes
# cross-correlation: the kernel is not flipped, unlike the textbook convolution.) It takes
# inputs shaped (batch, channels, height, width) and kernels shaped (out, in, kh, kw).
# Padding adds a ring of zeros, so the 5×5 input keeps its size; stride 2 skips every other
# window.


# %%
def convolve_examples() -> dict[str, list]:
    """The 5x5 inputs of the notes convolved with their 3x3 kernels, as nested lists."""
    image = torch.tensor([3, 4, 6, 5, 7, 2, 4, 6, 8, 2, 1, 6, 7, 8, 4,
                          9, 7, 4, 6, 2, 3, 7, 5, 4, 1.0]).view(1, 1, 5, 5)  # fmt: skip
    kernel = torch.arange(1, 10.0).view(1, 1, 3, 3)  # 1 2 3 / 4 5 6 / 7 8 9
    padded = F.conv2d(image, kernel, padding=1)[0, 0]
    second = torch.tensor([[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0],
                           [5, 2, 3, 1, 1], [2, 1, 0, 1, 1.0]]).view(1, 1, 5, 5)  # fmt: skip
    second_kernel = torch.tensor([[1, 2, 1], [0, 1, 0], [2, 1, 0.0]]).view(1, 1, 3, 3)
    results = {
        "no padding": F.conv2d(image, kernel)[0, 0],
        "padding 1, first row": padded[0],
        "padding 1, last row": padded[-1],
        "stride 2": F.conv2d(image, kernel, stride=2)[0, 0],
        "second example, stride 1": F.conv2d(second, second_kernel)[0, 0],
        "second example, stride 2": F.conv2d(second, second_kernel, stride=2)[0, 0],
    }
    return {label: value.int().tolist() for label, value in results.items()}


if __name__ == "__main__":
    convolutions = convolve_examples()
    for label, value in convolutions.items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 3. Max pooling
# Pooling keeps the largest value of each window; with no weights to learn, it only shrinks the
# image (by 2 with a 2×2 window) and makes the network tolerate small shifts. A window that hangs
# over the edge is dropped, unless `ceil_mode=True` keeps it.


# %%
def pooling_examples() -> dict[str, list]:
    """Max pooling of a 4x4 input with a 2x2 window, and of a 5x5 input with a 3x3 window."""
    four = torch.tensor([3, 4, 6, 5, 2, 4, 6, 8, 1, 6, 7, 8, 9, 7, 4, 6.0]).view(1, 1, 4, 4)
    five = torch.tensor([[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0],
                         [5, 2, 3, 1, 1], [2, 1, 0, 1, 1.0]]).view(1, 1, 5, 5)  # fmt: skip
    results = {
        "4x4, kernel 2": nn.MaxPool2d(2)(four)[0, 0],
        "5x5, kernel 3, ceil_mode=True": nn.MaxPool2d(3, ceil_mode=True)(five)[0, 0],
        "5x5, kernel 3, ceil_mode=False": nn.MaxPool2d(3)(five)[0, 0],
    }
    return {label: value.int().tolist() for label, value in results.items()}


if __name__ == "__main__":
    pools = pooling_examples()
    for label, value in pools.items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 4. Shapes through a network
# `nn.Conv2d(5, 10, 3)` holds 10 filters, each 5×3×3: one 3×3 slice per input channel. Stack
# convolutions, activations (layers without weights) and pools in an `nn.Sequential`, then
# `nn.Flatten()` turns the last feature maps into one vector per image for the linear layers.


# %%
def layer_shapes() -> dict[str, list[int]]:
    """Output and weight shapes of a Conv2d and of a small Sequential conv net."""
    conv = nn.Conv2d(5, 10, kernel_size=3)
    net = nn.Sequential(
        nn.Conv2d(3, 20, 5), nn.ReLU(), nn.MaxPool2d(2),   # 3x28x28 -> 20x24x24 -> 20x12x12
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),  # -> 50x8x8 -> 50x4x4
        nn.Flatten(),                                      # -> 800
        nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )  # fmt: skip
    return {
        "Conv2d(5, 10, 3) on 1x5x100x100": list(conv(torch.rand(1, 5, 100, 100)).shape),
        "its weight": list(conv.weight.shape),
        "Sequential conv net on ones(64, 3, 28, 28)": list(net(torch.ones(64, 3, 28, 28)).shape),
    }


if __name__ == "__main__":
    shapes = layer_shapes()
    for label, shape in shapes.items():
        print(f"{label}: {shape}")
    x = torch.tensor([-2.0, 0.0, 2.0])
    print(f"nn.ReLU()({x.tolist()}) = {nn.ReLU()(x).tolist()}")
    print(f"nn.Sigmoid()({x.tolist()}) = {[round(v, 4) for v in nn.Sigmoid()(x).tolist()]}")

# %% [markdown]
# ## 5. The data, as one tensor per split
# Lesson 03 loads images through a transform, one image at a time, every epoch. This lesson
# trains on the same 60,000 images four times over, so it converts them **once**: torchvision
# already keeps a split as one uint8 tensor (`dataset.data`, N×28×28), and as floats the whole
# training set is 188 MB, small enough to keep in memory. Every epoch then only slices it.
# Inputs are standardized with the mean and standard deviation of the *training* images.


# %%
def load_split(name: str, args, train: bool, limit: int | None = None) -> TensorDataset:
    """A split as (N x 1 x 28 x 28 floats in [0, 1], labels)."""
    dataset = vision_dataset(name, args, train=train)
    images = dataset.data[:limit].unsqueeze(1).float() / 255  # add the channel dimension
    return TensorDataset(images, torch.as_tensor(dataset.targets[:limit]))


if __name__ == "__main__":
    dataset_name = DATASETS[args.dataset]
    train_limit = args.train_images or (512 if args.quick else None)
    train_set = load_split(dataset_name, args, train=True, limit=train_limit)
    test_set = load_split(dataset_name, args, train=False, limit=256 if args.quick else None)
    mean, std = train_set.tensors[0].mean().item(), train_set.tensors[0].std().item()
    for split in (train_set, test_set):
        split.tensors[0].sub_(mean).div_(std)
    shuffle = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, generator=shuffle)
    test_loader = DataLoader(test_set, batch_size=1000)
    images, labels = next(iter(train_loader))
    print(f"{dataset_name}: {len(train_set):,} training and {len(test_set):,} test images, "
          f"standardized with mean {mean:.4f} and std {std:.4f}")  # fmt: skip
    print(f"one batch: images {list(images.shape)}, labels {list(labels.shape)}")

# %% [markdown]
# ## 6. The CNN
# Two blocks of 3×3 convolution (padding 1 keeps the size), ReLU and 2×2 max pooling turn a
# 1×28×28 image into 64 feature maps of 7×7; two linear layers map those 3,136 numbers to ten
# class scores (logits).


# %%
class CNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 14 x 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 7 x 7
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


if __name__ == "__main__":
    model = CNN().to(device)
    print(model)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; "
          f"logits of one batch: {list(model(images.to(device)).shape)}")  # fmt: skip

# %% [markdown]
# ## 7. Training and testing
# The loop of lesson 06, unchanged: move a batch to the device, compute the loss, zero the old
# gradients, back-propagate, step. `model.train()` and `model.eval()` switch layers such as
# dropout between their two behaviours (this CNN has none, but the habit matters), and
# `torch.no_grad()` skips building the graph while testing.
#
# The notes use plain SGD with batches of 64. Adam on standardized inputs goes much further per
# epoch; dividing the learning rate by 10 for the last epoch lets the weights settle. To time
# both to the end on your machine: `python benchmarks/notes_vs_course.py --task fashion-cnn`.


# %%
def train_epoch(model, loader, loss_fn, optimizer, device) -> float:
    """One pass over the training data; returns the mean training loss."""
    model.train()
    total = 0.0
    for images, labels in progress(loader, desc="training"):
        images, labels = images.to(device), labels.to(device)
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)


def evaluate(model, loader, loss_fn, device) -> tuple[float, float]:
    """(mean loss, accuracy) on a held-out split."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss_sum += loss_fn(logits, labels).item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
    return loss_sum / len(loader.dataset), correct / len(loader.dataset)


if __name__ == "__main__":
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(args.epochs - 1, 1))
    history = {"loss_history": [], "test_losses": [], "test_accuracies": [], "epoch_seconds": []}
    print(f"Adam lr {args.lr:g}, batch size {args.batch_size}, {args.epochs} epochs")
    for epoch in range(1, args.epochs + 1):
        epoch_started = time.perf_counter()  # loss.item() waits for the device, so this is fair
        train_loss = train_epoch(model, train_loader, loss_fn, optimizer, device)
        seconds = time.perf_counter() - epoch_started
        scheduler.step()
        # The notes' MNIST test loader wraps the training set by mistake, so their "test"
        # accuracy is a training accuracy. Here the held-out test split is measured.
        test_loss, accuracy = evaluate(model, test_loader, loss_fn, device)
        for key, value in zip(history, (train_loss, test_loss, accuracy, seconds)):
            history[key].append(value)
        print(f"epoch {epoch}: train loss {train_loss:.4f} | test loss {test_loss:.4f} | "
              f"test accuracy {accuracy:.4f} | {seconds:.1f} s")  # fmt: skip

# %% [markdown]
# ## 8. Results
# The two curves show whether the model still learns (both losses fall) or starts to memorize
# the training set (the test loss rises while the training loss keeps falling).

# %%
if __name__ == "__main__":
    epochs = range(1, len(history["loss_history"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, history["loss_history"], "o-", label="train")
    left.plot(epochs, history["test_losses"], "o-", label="test")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    left.legend()
    right.plot(epochs, history["test_accuracies"], "o-")
    right.set(xlabel="epoch", ylabel="accuracy", title="test accuracy")
    fig.suptitle(f"CNN on {dataset_name}")
    save_figure(fig, args.out / "training.png")

    metrics = {
        "test_accuracy": history["test_accuracies"][-1],
        "dataset": dataset_name,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        **history,
        "wall_seconds": time.perf_counter() - started,
    }
    print(f"final test accuracy {metrics['test_accuracy']:.4f}; "
          f"{metrics['wall_seconds']:.0f} s for the whole lesson")  # fmt: skip
    write_metrics(args.out, metrics, headline="test_accuracy")
