"""An MLP classifier: softmax, cross-entropy and the training loop, on FashionMNIST.

What you will learn
  - softmax and cross-entropy by hand (NumPy), then with `nn.CrossEntropyLoss`
  - the `NeuralNetwork` of the PyTorch tutorial: Flatten, 784 -> 512 -> 512 -> 10 with ReLU; its
    parameters; turning logits into a predicted class with softmax/argmax
  - `train_loop` / `test_loop`: `model.train()` / `model.eval()`, `torch.no_grad()`, accuracy and
    average loss, measured on the TEST split
  - hyper-parameters (learning rate, batch size, epochs): the notes' SGD lr 1e-3 crawls, Adam
    with standardized inputs gets past 0.87 test accuracy in a few epochs
  - `--variant deeper`: the notes' deeper MNIST MLP (784 -> 512 -> 256 -> 128 -> 64 -> 10) with
    SGD lr 0.01, momentum 0.5

How to run
    python lessons/06_mlp.py                      # FashionMNIST, Adam, 10 epochs
    python lessons/06_mlp.py --variant deeper     # MNIST, the deeper MLP with SGD + momentum
    python lessons/06_mlp.py --quick              # a few batches, seconds
    python lessons/06_mlp.py --lr 3e-3 --batch-size 64 --train-images 20000   # experiment
Data comes from the data root (torchvision layout, downloaded when missing and allowed; offline, a
synthetic stand-in). Plots and metrics.json go to outputs/06_mlp/.

Time: --quick ~5 s, full ~40 s on a 2-core CPU (FashionMNIST, test accuracy about 0.89).
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from common.cli import lesson_args, positive_float, positive_int
from common.data import vision_dataset
from common.report import progress, save_figure, write_metrics


def configure(parser) -> None:
    parser.add_argument("--variant", choices=["fashion", "deeper"], default="fashion",
                        help="fashion: NeuralNetwork + Adam on FashionMNIST (default); "
                             "deeper: the deeper MLP, SGD momentum 0.5, on MNIST")  # fmt: skip
    parser.add_argument("--train-images", type=positive_int, default=None,
                        help="train on the first N images (default all; --quick 1024)")  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="learning rate (default 1e-3 for Adam, 0.01 for deeper)")  # fmt: skip


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="06_mlp", configure=configure, epochs=10, batch_size=128)
    device = args.device
    epochs = min(args.epochs, 3) if args.quick else args.epochs
    started = time.perf_counter()

# %% [markdown]
# ## 1. Softmax and cross-entropy, by hand
# A classifier outputs one score (logit) $z_i$ per class. Softmax turns them into probabilities,
# $\hat y_i = e^{z_i} / \sum_j e^{z_j}$, and cross-entropy scores them against the one-hot label
# $y$: $L = -\sum_i y_i \log \hat y_i$, which is just $-\log$ of the probability given to the
# true class. Scores $z = (0.2, 0.1, -0.1)$ with true class 0:


# %%
def cross_entropy_by_hand() -> dict:
    """Softmax and cross-entropy of the notes' three scores, in NumPy."""
    z = np.array([0.2, 0.1, -0.1])
    y = np.array([1, 0, 0])  # one-hot: the true class is 0
    y_hat = np.exp(z) / np.exp(z).sum()
    return {
        "softmax(z)": np.round(y_hat, 4).tolist(),
        "cross-entropy by hand (NumPy)": round(float(-(y * np.log(y_hat)).sum()), 4),
    }


if __name__ == "__main__":
    by_hand = cross_entropy_by_hand()
    for label, value in by_hand.items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 2. The same with PyTorch
# `nn.CrossEntropyLoss` is log-softmax followed by the negative log-likelihood. It takes raw
# logits and class *indices* (not one-hot vectors), so a network's last layer must not apply
# softmax itself. On a batch it returns the mean loss: three samples with labels $[2, 0, 1]$,
# scored once by good predictions and once by poor ones.


# %%
def cross_entropy_with_pytorch() -> dict[str, float]:
    """nn.CrossEntropyLoss on the example above and on the notes' batch of three."""
    loss_fn = nn.CrossEntropyLoss()
    one = loss_fn(torch.tensor([[0.2, 0.1, -0.1]]), torch.tensor([0]))
    labels = torch.tensor([2, 0, 1])
    good = torch.tensor([[0.1, 0.2, 0.9], [1.1, 0.1, 0.2], [0.2, 2.1, 0.1]])
    poor = torch.tensor([[0.8, 0.2, 0.3], [0.2, 0.3, 0.5], [0.2, 0.2, 0.5]])
    losses = {
        "nn.CrossEntropyLoss": one,
        "batch loss, good predictions": loss_fn(good, labels),
        "batch loss, poor predictions": loss_fn(poor, labels),
    }
    return {label: round(loss.item(), 4) for label, loss in losses.items()}


if __name__ == "__main__":
    with_pytorch = cross_entropy_with_pytorch()
    for label, value in with_pytorch.items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 3. The model
# A model is an `nn.Module`: layers created in `__init__`, wired together in `forward`.
# `nn.Flatten` turns each 1×28×28 image into 784 numbers; three linear layers with ReLU between
# them map those to 10 logits. `named_parameters()` lists every weight matrix and bias vector the
# optimizer will update. `--variant deeper` builds the notes' deeper MNIST network instead.


# %%
class NeuralNetwork(nn.Module):
    """The tutorial's FashionMNIST classifier: 28x28 image -> 784 -> 512 -> 512 -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()  # N x 1 x 28 x 28 -> N x 784
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512), nn.ReLU(),
            nn.Linear(512, 512), nn.ReLU(),
            nn.Linear(512, 10),  # logits: no softmax here, the loss applies it
        )  # fmt: skip

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


class DeeperMLP(nn.Module):
    """The notes' deeper MNIST MLP: 784 -> 512 -> 256 -> 128 -> 64 -> 10."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.layers(x)


def predict(model: nn.Module, x: torch.Tensor) -> tuple[int, float]:
    """(predicted class, its softmax probability) for one input."""
    # The notes call model.forward(x) directly. Call model(x): __call__ runs forward AND the
    # hooks PyTorch (and tools built on it) attach to modules.
    probabilities = nn.Softmax(dim=1)(model(x))
    return probabilities.argmax(1).item(), probabilities.max().item()


if __name__ == "__main__":
    model = (DeeperMLP() if args.variant == "deeper" else NeuralNetwork()).to(device)
    print(model)
    for name, parameter in model.named_parameters():
        print(f"{name}: size {list(parameter.shape)}")
    parameter_count = sum(parameter.numel() for parameter in model.parameters())
    print(f"{parameter_count:,} parameters")
    predicted, probability = predict(model, torch.rand(1, 28, 28, device=device))
    print(f"a random input: predicted class {predicted} with probability {probability:.3f} "
          "(untrained: a guess)")  # fmt: skip

# %% [markdown]
# ## 4. The data, as one tensor per split
# Lesson 03 decodes every image through a transform (`ToTensor`, `Normalize`) each time it is
# used. This lesson reads the 60,000 training images ten times, so it converts them **once**:
# torchvision already holds a split as one uint8 tensor (`dataset.data`, N×28×28); as floats the
# training split takes 188 MB, small enough to keep in memory, and slicing it is much faster
# than converting images one by one in every epoch. What `Normalize` would do is done by hand:
# subtract the *training* mean, divide by its standard deviation, for both splits (the test
# images must not influence the statistics).


# %%
def load_split(name: str, args, train: bool, limit: int | None = None) -> TensorDataset:
    """A split as (N x 1 x 28 x 28 floats in [0, 1], labels)."""
    dataset = vision_dataset(name, args, train=train)
    images = dataset.data[:limit].unsqueeze(1).float() / 255  # add the channel dimension
    return TensorDataset(images, torch.as_tensor(dataset.targets[:limit]))


def normalize(train: TensorDataset, test: TensorDataset) -> tuple[float, float]:
    """Standardize both splits, in place, with the TRAINING mean and std; returns them."""
    mean, std = train.tensors[0].mean().item(), train.tensors[0].std().item()
    for split in (train, test):
        split.tensors[0].sub_(mean).div_(std)
    return mean, std


if __name__ == "__main__":
    dataset_name = "MNIST" if args.variant == "deeper" else "FashionMNIST"
    train_limit = args.train_images or (1024 if args.quick else None)  # None: every image
    train_set = load_split(dataset_name, args, train=True, limit=train_limit)
    test_set = load_split(dataset_name, args, train=False, limit=512 if args.quick else None)
    mean, std = normalize(train_set, test_set)
    shuffle = torch.Generator().manual_seed(args.seed)  # the same batch order on every run
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, generator=shuffle)
    test_loader = DataLoader(test_set, batch_size=1000)
    images, labels = next(iter(train_loader))
    print(f"{dataset_name}: {len(train_set):,} training and {len(test_set):,} test images, "
          f"standardized with the training mean {mean:.4f} and std {std:.4f}")  # fmt: skip
    print(f"one batch: images {list(images.shape)}, labels {list(labels.shape)}")

# %% [markdown]
# ## 5. The training loop and the test loop
# One training step is five lines: move the batch to the device, forward pass and loss, clear
# the old gradients (they add up otherwise), back-propagate, let the optimizer update the
# weights. `model.train()` / `model.eval()` switch layers such as Dropout and BatchNorm between
# their two behaviours (this MLP has none, but the habit matters), and `torch.no_grad()` skips
# recording the graph while testing. An untrained model scores about chance, 1 in 10:


# %%
def train_loop(dataloader, model, loss_fn, optimizer, device) -> float:
    """One pass over `dataloader`; returns the mean loss of its batches."""
    model.train()
    total = 0.0
    for X, y in progress(dataloader, desc="training"):
        X, y = X.to(device), y.to(device)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(dataloader)


def test_loop(dataloader, model, loss_fn, device) -> tuple[float, float]:
    """(average loss, accuracy) over every sample of `dataloader`."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            logits = model(X)
            loss_sum += loss_fn(logits, y).item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
    size = len(dataloader.dataset)
    return loss_sum / size, correct / size


if __name__ == "__main__":
    loss_fn = nn.CrossEntropyLoss()
    untrained_loss, untrained_accuracy = test_loop(test_loader, model, loss_fn, device)
    print(f"untrained: test loss {untrained_loss:.4f}, test accuracy {untrained_accuracy:.4f}")

# %% [markdown]
# ## 6. Hyper-parameters: the learning rate matters
# The learning rate (how far each step moves), the batch size (samples per step) and the
# number of epochs (passes over the data) are chosen, not learned. The notes train this network
# with plain SGD at lr $10^{-3}$: each step is tiny, so it needs many epochs. Adam adapts a step
# size for every weight. The same batches of 64, from the same starting weights, with both
# (`python benchmarks/notes_vs_course.py --task fashion-mlp` runs both recipes to the end):


# %%
def compare_optimizers(train_set, test_loader, images: int, device, seed: int) -> dict:
    """{optimizer: (train loss, test accuracy)} after one pass over the first `images` images."""
    recipes = {
        "SGD lr 1e-3 (the notes)": lambda parameters: torch.optim.SGD(parameters, lr=1e-3),
        "Adam lr 1e-3 (this lesson)": lambda parameters: torch.optim.Adam(parameters, lr=1e-3),
    }
    first = Subset(train_set, range(min(images, len(train_set))))
    loss_fn, results = nn.CrossEntropyLoss(), {}
    for name, make_optimizer in recipes.items():
        torch.manual_seed(seed)
        model = NeuralNetwork().to(device)
        loader = DataLoader(first, 64, shuffle=True, generator=torch.Generator().manual_seed(seed))
        train_loss = train_loop(loader, model, loss_fn, make_optimizer(model.parameters()), device)
        results[name] = (train_loss, test_loop(test_loader, model, loss_fn, device)[1])
    return results


if __name__ == "__main__":
    comparison_images = 256 if args.quick else 19_200
    comparison = compare_optimizers(train_set, test_loader, comparison_images, device, args.seed)
    print(f"{comparison_images // 64} batches of 64, one model per optimizer:")
    for name, (train_loss, accuracy) in comparison.items():
        print(f"{name}: train loss {train_loss:.4f}, test accuracy {accuracy:.4f}")

# %% [markdown]
# ## 7. Training
# Now the full recipe: Adam on standardized FashionMNIST (or, with `--variant deeper`, the
# notes' SGD with momentum 0.5 on MNIST), one `train_loop` and one `test_loop` per epoch.

# %%
if __name__ == "__main__":
    if args.variant == "deeper":  # the notes' recipe for this network
        lr = args.lr or 0.01
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.5)
        recipe = f"SGD lr {lr:g} momentum 0.5"
    else:
        lr = args.lr or 1e-3
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        recipe = f"Adam lr {lr:g}"
    history = {"loss_history": [], "test_losses": [], "test_accuracies": [], "epoch_seconds": []}
    print(f"{recipe}, batch size {args.batch_size}, {epochs} epochs")
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        train_loss = train_loop(train_loader, model, loss_fn, optimizer, device)
        seconds = time.perf_counter() - epoch_started
        # The notes' MNIST test loader wraps the training set by mistake, so their "test"
        # accuracy is a training accuracy. Here the held-out test split is measured.
        test_loss, accuracy = test_loop(test_loader, model, loss_fn, device)
        for key, value in zip(history, (train_loss, test_loss, accuracy, seconds)):
            history[key].append(value)
        print(f"epoch {epoch}: train loss {train_loss:.4f} | test loss {test_loss:.4f} | "
              f"test accuracy {accuracy:.4f} | {seconds:.1f} s")  # fmt: skip

# %% [markdown]
# ## 8. Results
# Both losses falling means the model still learns; a test loss that rises while the training
# loss keeps falling would mean it has started to memorize the training images.

# %%
if __name__ == "__main__":
    epoch_numbers = range(1, len(history["loss_history"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epoch_numbers, history["loss_history"], "o-", label="train")
    left.plot(epoch_numbers, history["test_losses"], "o-", label="test")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    left.legend()
    right.plot(epoch_numbers, history["test_accuracies"], "o-")
    right.set(xlabel="epoch", ylabel="accuracy", title="test accuracy")
    fig.suptitle(f"{dataset_name}: {recipe}")
    save_figure(fig, args.out / "training.png")

    metrics = {
        "test_accuracy": history["test_accuracies"][-1],
        "dataset": dataset_name,
        "variant": args.variant,
        "recipe": recipe,
        "batch_size": args.batch_size,
        "epochs": epochs,
        "parameters": parameter_count,
        **history,
        "optimizer_comparison": {name: accuracy for name, (_, accuracy) in comparison.items()},
        "cross_entropy": {**by_hand, **with_pytorch},
        "wall_seconds": time.perf_counter() - started,
    }
    print(f"final test accuracy {metrics['test_accuracy']:.4f}; "
          f"{metrics['wall_seconds']:.0f} s for the whole lesson")  # fmt: skip
    write_metrics(args.out, metrics, headline="test_accuracy")
