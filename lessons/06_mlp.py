"""An MLP classifier: softmax, cross-entropy and the training loop, on FashionMNIST.

What you will learn
  - softmax and cross-entropy by hand (NumPy), then with `nn.CrossEntropyLoss`
  - the `NeuralNetwork` of the PyTorch tutorial: Flatten, 784 -> 512 -> 512 -> 10 with ReLU; its
    parameters; turning logits into a predicted class with softmax/argmax
  - `train_loop` / `test_loop`: `model.train()` / `model.eval()`, `torch.no_grad()`, accuracy and
    average loss, measured on the TEST split
  - hyper-parameters (learning rate, batch size, epochs): the tutorial's SGD lr 1e-3 crawls, Adam
    with normalized inputs gets past 0.87 test accuracy in a few epochs
  - `--variant deeper`: the notes' deeper MNIST MLP (784 -> 512 -> 256 -> 128 -> 64 -> 10) with
    SGD lr 0.01, momentum 0.5

How to run
    python lessons/06_mlp.py                      # FashionMNIST, Adam, 10 epochs
    python lessons/06_mlp.py --variant deeper     # MNIST, the deeper MLP with SGD + momentum
    python lessons/06_mlp.py --quick              # a few batches, seconds
    python lessons/06_mlp.py --lr 3e-3 --batch-size 64 --train-images 20000   # experiment
Data comes from the data root (torchvision layout, downloaded when missing and allowed; offline, a
synthetic stand-in). Plots and metrics.json go to outputs/06_mlp/.
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~5 s, full ~30 s on a 2-core CPU (FashionMNIST, test accuracy about 0.89).
"""

# %% Imports
from __future__ import annotations

import itertools
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms.v2.functional import pil_to_tensor

from common.cli import lesson_args, positive_float, positive_int
from common.data import is_stand_in, vision_dataset
from common.device import (
    gradient_scaler,
    loader_options,
    mixed_precision,
    synchronize,
    to_device,
)
from common.report import ReferenceValues, save_figure, write_metrics

LESSON = Path(__file__).stem
QUICK_TRAIN, QUICK_TEST = 1024, 512  # images used by --quick
BASELINE_BATCHES = 300  # how long the slow SGD lr 1e-3 baseline is shown

# Reference values from CURRICULUM.md §06: label -> (value, matches?)
references = ReferenceValues()


def check(label: str, value: float, expected: float, places: int = 4) -> float:
    """Print `value` next to its reference and remember whether they agree to `places` decimals."""
    value = round(float(value), places)
    ok = value == expected
    return references.check(label, value, expected, ok)


# %% 1. Softmax and cross-entropy
def softmax_and_cross_entropy() -> None:
    print("\n# 1. Softmax and cross-entropy")
    # By hand: softmax turns scores (logits) z into probabilities; the loss is -log p[true class].
    z = np.array([0.2, 0.1, -0.1])
    y = np.array([1, 0, 0])  # one-hot: the true class is 0
    y_hat = np.exp(z) / np.exp(z).sum()
    print(f"  softmax(z) = {np.round(y_hat, 4).tolist()} (sums to {y_hat.sum():.1f})")
    check("cross-entropy by hand (NumPy)", (-y * np.log(y_hat)).sum(), 0.9729)

    # nn.CrossEntropyLoss = log-softmax + negative log-likelihood, on raw logits and class indices.
    # So the network's last layer must NOT apply softmax itself.
    criterion = nn.CrossEntropyLoss()
    loss = criterion(torch.tensor([[0.2, 0.1, -0.1]]), torch.tensor([0]))
    check("nn.CrossEntropyLoss", loss.item(), 0.9729)

    # A batch of three with labels [2, 0, 1]: good predictions give a small mean loss.
    labels = torch.tensor([2, 0, 1])
    good = torch.tensor([[0.1, 0.2, 0.9], [1.1, 0.1, 0.2], [0.2, 2.1, 0.1]])
    poor = torch.tensor([[0.8, 0.2, 0.3], [0.2, 0.3, 0.5], [0.2, 0.2, 0.5]])
    check("batch loss, good predictions", criterion(good, labels).item(), 0.4966)
    check("batch loss, poor predictions", criterion(poor, labels).item(), 1.2389)


# %% 2. The models
class NeuralNetwork(nn.Module):
    """The tutorial's FashionMNIST classifier: 28x28 image -> 784 -> 512 -> 512 -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()  # N x 1 x 28 x 28 -> N x 784
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),  # logits: no softmax here, the loss applies it
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


class DeeperMLP(nn.Module):
    """The deeper MNIST MLP of the notes: 784 -> 512 -> 256 -> 128 -> 64 -> 10."""

    def __init__(self):
        super().__init__()
        sizes = [28 * 28, 512, 256, 128, 64]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 10))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def inspect_model(model: nn.Module) -> int:
    print("\n# 2. The model")
    print(model)
    for name, parameter in model.named_parameters():
        print(f"  {name}: size {list(parameter.shape)}")
    total = sum(parameter.numel() for parameter in model.parameters())
    print(f"  {total:,} parameters")
    # Call the model, never model.forward(x): __call__ also runs the hooks PyTorch relies on.
    logits = model(torch.rand(1, 28, 28))
    probabilities = nn.Softmax(dim=1)(logits)
    print(f"  random input -> logits {list(logits.shape)}, predicted class "
          f"{probabilities.argmax(1).item()} (p = {probabilities.max().item():.3f})")  # fmt: skip
    return total


# %% 3. Data: the whole split as one normalized tensor
def load_split(name: str, args, train: bool, limit: int | None = None) -> TensorDataset:
    """A dataset split as a TensorDataset of (N x 1 x 28 x 28 floats in [0, 1], labels).

    The usual recipe, `transform=Compose([ToTensor(), Normalize(...)])`, decodes and converts every
    image again in every epoch. These images fit in memory (60 000 x 784 bytes = 47 MB), so we
    convert them once: on a 2-core CPU an epoch of this lesson's MLP took 5.1 s the usual way and
    2.0 s this way.
    """
    dataset = vision_dataset(name, args, train=train)  # no transform: raw uint8 images
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if is_stand_in(dataset):  # the offline stand-in makes images on demand: build only those
        pixels = torch.stack([pil_to_tensor(dataset[i][0]) for i in range(count)])
    else:  # torchvision keeps the whole split as one uint8 tensor in `.data`
        pixels = dataset.data[:count].unsqueeze(1)
    labels = torch.as_tensor(dataset.targets[:count])
    return TensorDataset(pixels.float() / 255, labels)


def normalize(train: TensorDataset, test: TensorDataset) -> tuple[float, float]:
    """Shift and scale both splits by the TRAINING mean and std (the test set must not leak in)."""
    mean, std = train.tensors[0].mean().item(), train.tensors[0].std().item()
    for split in (train, test):
        split.tensors[0].sub_(mean).div_(std)
    print(f"  normalized with the training mean {mean:.4f} and std {std:.4f}")
    return mean, std


def make_loaders(train, test, batch_size: int, device: torch.device, seed: int):
    # The data is already decoded in memory, so worker processes would only add overhead; on CUDA
    # pinned memory still lets `to_device(..., non_blocking)` overlap copies with compute.
    options = loader_options(device, workers=0)
    shuffle = torch.Generator().manual_seed(seed)  # the same batch order on every run
    train_loader = DataLoader(train, batch_size, shuffle=True, generator=shuffle, **options)
    test_loader = DataLoader(test, 1000, shuffle=False, **options)
    return train_loader, test_loader


# %% 4. The training loop
def train_loop(loader, model, loss_fn, optimizer, device, scaler, max_batches=None) -> float:
    """One pass over `loader` (or its first `max_batches`); returns the mean training loss."""
    model.train()  # layers such as Dropout/BatchNorm behave differently in training
    total, batches = 0.0, 0
    for batch, (images, labels) in enumerate(loader):
        if max_batches is not None and batch >= max_batches:
            break
        images, labels = to_device((images, labels), device)
        with mixed_precision(device):  # float16 on CUDA, a no-op on the CPU
            loss = loss_fn(model(images), labels)
        optimizer.zero_grad()  # gradients accumulate unless cleared
        scaler.scale(loss).backward()  # the scaler keeps float16 gradients from underflowing
        scaler.step(optimizer)
        scaler.update()
        total += loss.item()
        batches += 1
        if batch % 200 == 0:
            print(f"    batch {batch:4d}/{len(loader)}  loss {loss.item():.4f}")
    return total / max(batches, 1)


def test_loop(loader, model, loss_fn, device) -> tuple[float, float]:
    """Average loss and accuracy over `loader`; no gradients are needed to evaluate."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = to_device((images, labels), device)
            with mixed_precision(device):
                logits = model(images)
            loss_sum += loss_fn(logits.float(), labels).item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
    return loss_sum / count, correct / count


# %% 5. Hyper-parameters: the tutorial's SGD lr 1e-3 against Adam
def compare_optimizers(train, test, args, batches: int) -> dict:
    print(f"\n# 5. The same {batches} batches of 64 with two optimizers")
    loss_fn = nn.CrossEntropyLoss()
    results = {}
    recipes = {
        "SGD lr 1e-3 (the tutorial)": lambda params: torch.optim.SGD(params, lr=1e-3),
        "Adam lr 1e-3": lambda params: torch.optim.Adam(params, lr=1e-3),
    }
    for name, make_optimizer in recipes.items():
        torch.manual_seed(args.seed)
        model = NeuralNetwork().to(args.device)
        train_loader, test_loader = make_loaders(train, test, 64, args.device, args.seed)
        optimizer = make_optimizer(model.parameters())
        scaler = gradient_scaler(args.device)
        loss = train_loop(train_loader, model, loss_fn, optimizer, args.device, scaler, batches)
        _, accuracy = test_loop(test_loader, model, loss_fn, args.device)
        print(f"  {name}: train loss {loss:.3f}, test accuracy {accuracy:.3f}")
        results[name] = accuracy
    print("  SGD with lr 1e-3 takes tiny steps: the notes needed 10 epochs (152 s) for 0.712.")
    return results


# %% 6. Training the default recipe
def train(args, model, train, test, optimizer) -> dict:
    loss_fn = nn.CrossEntropyLoss()
    scaler = gradient_scaler(args.device)
    train_loader, test_loader = make_loaders(train, test, args.batch_size, args.device, args.seed)
    history = {
        "loss_history": [],
        "test_loss_per_epoch": [],
        "test_accuracy_per_epoch": [],
        "epoch_seconds": [],
    }
    for epoch in range(1, args.epochs + 1):
        synchronize(args.device)
        started = time.perf_counter()
        train_loss = train_loop(train_loader, model, loss_fn, optimizer, args.device, scaler)
        synchronize(args.device)
        seconds = time.perf_counter() - started
        # The notes' MNIST code evaluates on the TRAINING set by mistake (its test_loader wraps
        # train_dataset), which flatters the model. Here the held-out test split is measured.
        test_loss, accuracy = test_loop(test_loader, model, loss_fn, args.device)
        print(f"  epoch {epoch}: train loss {train_loss:.4f} | test loss {test_loss:.4f} | "
              f"test accuracy {accuracy:.4f} | {seconds:.2f} s")  # fmt: skip
        for key, value in zip(history, (train_loss, test_loss, accuracy, seconds)):
            history[key].append(value)
    return history


def plot(history: dict, title: str, path: Path) -> None:
    epochs = range(1, len(history["loss_history"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, history["loss_history"], "o-", label="train")
    left.plot(epochs, history["test_loss_per_epoch"], "o-", label="test")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    left.legend()
    right.plot(epochs, history["test_accuracy_per_epoch"], "o-")
    right.set(xlabel="epoch", ylabel="accuracy", title="test accuracy")
    fig.suptitle(title)
    save_figure(fig, path)


# %% Main
def configure(parser) -> None:
    parser.add_argument(
        "--variant",
        choices=["fashion", "deeper"],
        default="fashion",
        help="fashion: NeuralNetwork + Adam on FashionMNIST (default); "
        "deeper: the deeper MLP with SGD momentum 0.5 on MNIST",
    )
    parser.add_argument(
        "--train-images",
        type=positive_int,
        default=None,
        help="train on the first N training images only (default all; --quick: 1024)",
    )
    parser.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate (default 1e-3 / 0.01)"
    )


def main(argv=None) -> dict:
    args = lesson_args(
        __doc__, argv, name=LESSON, configure=configure, epochs=10, batch_size=128, seed=0
    )
    if args.quick:  # a smoke run: 3 epochs of 8 batches
        args.epochs = min(args.epochs, 3)
    started = time.perf_counter()
    references.clear()
    softmax_and_cross_entropy()
    deeper = args.variant == "deeper"
    model = DeeperMLP() if deeper else NeuralNetwork()
    parameters = inspect_model(model)

    dataset = "MNIST" if deeper else "FashionMNIST"
    print(f"\n# 3. Data: {dataset}")
    train_limit, test_limit = (QUICK_TRAIN, QUICK_TEST) if args.quick else (None, None)
    train_limit = args.train_images or train_limit
    train_set = load_split(dataset, args, train=True, limit=train_limit)
    test_set = load_split(dataset, args, train=False, limit=test_limit)
    print(f"  {len(train_set)} training and {len(test_set)} test images")
    normalize(train_set, test_set)

    print("\n# 4. train_loop / test_loop are defined above; they are used from here on")
    baseline = {}
    if not deeper:
        baseline = compare_optimizers(
            train_set, test_set, args, 4 if args.quick else BASELINE_BATCHES
        )

    model = model.to(args.device)
    if deeper:  # the notes' recipe for this net
        lr = args.lr or 0.01
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.5)
        recipe = f"SGD lr {lr:g} momentum 0.5"
    else:  # Adam adapts a step size per weight: far fewer epochs than plain SGD
        lr = args.lr or 1e-3
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        recipe = f"Adam lr {lr:g}"
    print(f"\n# 6. Training: {recipe}, batch size {args.batch_size}, {args.epochs} epochs")
    history = train(args, model, train_set, test_set, optimizer)
    train_seconds = sum(history["epoch_seconds"])
    wall_seconds = time.perf_counter() - started
    accuracy = history["test_accuracy_per_epoch"][-1]
    print(f"  final test accuracy {accuracy:.4f}; {train_seconds:.0f} s of training, "
          f"{wall_seconds:.0f} s for the whole lesson")  # fmt: skip
    if not deeper and not args.quick:
        beaten = accuracy > 0.712 and wall_seconds < 152 / 2
        print(f"  the notes' recipe: 0.712 in 152 s; this run "
              f"{'beats' if beaten else 'does NOT beat'} it in under half the time")  # fmt: skip
    plot(history, f"{dataset}: {recipe}", args.out / "training.png")

    metrics = {
        "test_accuracy": accuracy,
        "dataset": dataset,
        "variant": args.variant,
        "recipe": recipe,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "parameters": parameters,
        **history,
        "train_seconds": train_seconds,
        "wall_seconds": wall_seconds,
        "baseline_accuracy": baseline,
        **references.metrics(),
    }
    write_metrics(args.out, metrics, headline="test_accuracy")
    return metrics


if __name__ == "__main__":
    main()
