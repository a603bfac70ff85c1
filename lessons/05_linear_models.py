"""Linear and logistic models from scratch: from guessing a weight to a classifier on real data.

What you will learn
  - a loss function, and finding its minimum by exhaustive search (MSE against w, plotted)
  - gradient descent written by hand, batch and stochastic
  - the thermometer: fitting w * t_u + b, watching a too-large learning rate diverge, and why
    normalizing the input fixes it
  - the same fit with autograd, then with `torch.optim.SGD`
  - `nn.Linear` + `nn.MSELoss` regression; logistic regression with `nn.BCELoss`
  - binary cross-entropy computed by hand for four predictions
  - a multi-feature classifier (8 -> 6 -> 4 -> 1) on the diabetes table with a `Dataset`, a
    `DataLoader` and a held-out split
  - why stacking linear layers without a non-linearity gains nothing

How to run
    python lessons/05_linear_models.py              # the whole lesson
    python lessons/05_linear_models.py --quick      # 10 diabetes epochs instead of 40
The diabetes table is read from <data root>/liuer/diabetes.csv.gz (downloaded when missing and
allowed; offline, a synthetic table of the same shape stands in). Plots go to outputs/<lesson>/.
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~5 s, full ~5 s on a 2-core CPU (a third of it is importing torch).
"""

# %% Imports
from __future__ import annotations

import contextlib
import math
import time
import warnings
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, random_split

from common.cli import lesson_args
from common.data import DataError, DataUnavailable, fetch_file, open_text, use_stand_in
from common.device import to_device
from common.report import ReferenceValues, save_figure, write_metrics

LESSON = Path(__file__).stem
DIABETES = "liuer/diabetes.csv.gz"
DIABETES_URL = (
    "https://raw.githubusercontent.com/hunkim/PyTorchZeroToAll/master/data/diabetes.csv.gz"
)
DIABETES_MD5 = "b7f372850118dfaf306e2f334e6a718f"
DIABETES_FORMAT = "a gzip-compressed CSV with 9 numbers per row (8 features, then a 0/1 label)"

# Reference values from CURRICULUM.md that this lesson reproduces: label -> (value, matches?)
references = ReferenceValues()


def check(label: str, value, expected, tolerance: float = 0.0):
    """Print `value` next to its reference value, and remember whether they agree."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if tolerance:
        ok = bool(np.allclose(value, expected, rtol=0, atol=tolerance))
    else:
        ok = value == expected
    return references.check(label, value, expected, ok)


@contextlib.contextmanager
def single_thread():
    """Run torch on one CPU thread: for models this small, splitting every tiny matrix product
    across threads costs more than it saves (ten times slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# The toy problems below use a handful of numbers, so they run on the CPU whatever --device says:
# launching GPU kernels for three numbers is slower, and the reference values stay exact.
X_TOY = torch.tensor([1.0, 2.0, 3.0])
Y_TOY = torch.tensor([2.0, 4.0, 6.0])


# %% 1. Exhaustive search
def exhaustive_search(out: Path) -> None:
    print("\n# 1. Exhaustive search: try every w, keep the one with the lowest loss")
    weights = torch.linspace(0.0, 4.0, 41)  # 0.0, 0.1, ..., 4.0
    # Broadcasting: (41, 1) weights times (3,) inputs -> (41, 3) predictions, one row per w.
    predictions = weights[:, None] * X_TOY
    mse = ((predictions - Y_TOY) ** 2).mean(dim=1)
    at_integers = [round(mse[index].item(), 2) for index in (0, 10, 20, 30, 40)]
    check("MSE at w = 0, 1, 2, 3, 4", at_integers, [18.67, 4.67, 0.0, 4.67, 18.67])
    print(f"  best w = {weights[mse.argmin()].item():.1f}")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(weights, mse)
    ax.set(xlabel="w", ylabel="MSE", title="Loss of y = w * x on x = [1, 2, 3], y = 2x")
    save_figure(fig, out / "mse_vs_w.png")


# %% 2. Gradient descent by hand
def gradient_descent_by_hand() -> None:
    print("\n# 2. Gradient descent by hand: w <- w - lr * d(cost)/dw")
    w, lr = 1.0, 0.01
    for epoch in range(1, 101):
        cost = ((w * X_TOY - Y_TOY) ** 2).mean()
        gradient = (2 * X_TOY * (w * X_TOY - Y_TOY)).mean()  # d/dw of mean (xw - y)^2
        w -= lr * gradient.item()
        if epoch in (1, 10, 100):
            print(f"  batch epoch {epoch:3d}: cost {cost.item():.6f}, w -> {w:.5f}")
    check("batch gradient descent, 100 epochs: w", round(w, 3), 2.0)

    # Stochastic: update after every single sample (noisier steps, but many more of them).
    w = 1.0
    for _ in range(100):
        for x, y in zip(X_TOY, Y_TOY):
            w -= lr * (2 * x * (w * x - y)).item()
    check("stochastic gradient descent, 100 epochs: w", round(w, 3), 2.0)


# %% 3. The thermometer, with hand-written gradients
T_C = torch.tensor([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0])  # Celsius
T_U = torch.tensor([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4])  # unknown


def model(t_u, w, b):
    return w * t_u + b


def loss_fn(t_p, t_c):
    return ((t_p - t_c) ** 2).mean()


def grad_fn(t_u, t_c, t_p):
    """d(loss)/d(w, b) by the chain rule: d loss/d t_p = 2 (t_p - t_c) / n, d t_p/dw = t_u."""
    dloss_dtp = 2 * (t_p - t_c) / t_p.size(0)
    return torch.stack([(dloss_dtp * t_u).sum(), dloss_dtp.sum()])


def training_loop(epochs, lr, params, t_u, t_c):
    """Plain gradient descent on (w, b); stops early and says so when the loss blows up."""
    losses = []
    for epoch in range(1, epochs + 1):
        t_p = model(t_u, *params)
        loss = loss_fn(t_p, t_c)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            print(f"  epoch {epoch}: loss {losses[-1]} -> diverged, stopping")
            break
        params = params - lr * grad_fn(t_u, t_c, t_p)
    return params, losses


def thermometer_by_hand() -> dict:
    print("\n# 3. The thermometer: t_c = w * t_u + b, gradients by hand")
    initial = loss_fn(model(T_U, 1.0, 0.0), T_C).item()
    check("initial loss at w = 1, b = 0", round(initial, 2), 1763.88)

    _, losses = training_loop(100, 1e-2, torch.tensor([1.0, 0.0]), T_U, T_C)
    check("lr 1e-2: loss at epoch 10", float(f"{losses[9]:.3g}"), 9.09e34, 0.01e34)
    check("lr 1e-2: loss at epoch 11", losses[10], math.inf)
    print(
        "  Why: t_u is about 50, so d(loss)/dw is ~50 times d(loss)/db and a step of 1e-2 moves w\n"
        "  far past the minimum; each overshoot is larger than the last, until float32 overflows."
    )

    params, losses = training_loop(100, 1e-4, torch.tensor([1.0, 0.0]), T_U, T_C)
    check("lr 1e-4: loss at epoch 100", round(losses[-1], 2), 29.02)
    check("lr 1e-4: params after 100 epochs", [round(p, 4) for p in params.tolist()],
          [0.2327, -0.0438])  # fmt: skip
    print("  Stable, but w learns fast and b barely moves: the two gradients differ in scale.")

    # Normalizing puts w's and b's gradients on the same scale, so one lr suits both.
    t_un = (T_U - T_U.mean()) / T_U.std()
    params, losses = training_loop(5000, 1e-2, torch.tensor([1.0, 0.0]), t_un, T_C)
    check("normalized input, lr 1e-2, 5000 epochs: loss", round(losses[-1], 6), 2.927645, 2e-6)
    return {"params": params, "t_un": t_un, "losses": losses}


# %% 4. The same fit with autograd, then with an optimizer
def thermometer_autograd(t_un: torch.Tensor) -> torch.Tensor:
    print("\n# 4. The same fit: autograd computes the gradient, then optim.SGD applies it")
    params = torch.tensor([1.0, 0.0], requires_grad=True)
    for _ in range(5000):
        loss = loss_fn(model(t_un, *params), T_C)
        if params.grad is not None:
            params.grad.zero_()  # backward() adds to .grad: clear last epoch's gradient
        loss.backward()
        with torch.no_grad():  # the update itself must not become part of the graph
            params -= 1e-2 * params.grad
    check("autograd, 5000 epochs: loss", round(loss.item(), 6), 2.927645, 2e-6)

    params = torch.tensor([1.0, 0.0], requires_grad=True)
    optimizer = torch.optim.SGD([params], lr=1e-2)
    for _ in range(5000):
        loss = loss_fn(model(t_un, *params), T_C)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    check("optim.SGD, 5000 epochs: loss", round(loss.item(), 6), 2.927645, 2e-6)
    return params.detach()


def plot_thermometer(params: torch.Tensor, out: Path) -> None:
    t_range = torch.linspace(T_U.min().item(), T_U.max().item(), 50)
    t_range_n = (t_range - T_U.mean()) / T_U.std()  # the model expects normalized input
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(T_U, T_C, "o", label="measurements")
    ax.plot(t_range, model(t_range_n, *params), "-", label="fitted line")
    ax.set(xlabel="unknown units (t_u)", ylabel="Celsius (t_c)", title="Thermometer fit")
    ax.legend()
    save_figure(fig, out / "thermometer_fit.png")


# %% 5. nn.Linear regression
def linear_regression() -> float:
    print("\n# 5. nn.Linear regression: y = 2x")
    x, y = X_TOY[:, None], Y_TOY[:, None]  # nn.Linear wants (samples, features)
    linear = nn.Linear(1, 1)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.01)
    for epoch in range(1, 2001):
        loss = criterion(linear(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if epoch in (1, 100, 2000):
            print(f"  epoch {epoch:4d}: loss {loss.item():.6f}")
    print(f"  w = {linear.weight.item():.4f}, b = {linear.bias.item():.4f}")
    prediction = linear(torch.tensor([[4.0]])).item()
    check("prediction at x = 4", round(prediction, 2), 8.0, 0.05)
    return prediction


# %% 6. Logistic regression
def logistic_regression(out: Path) -> float:
    print("\n# 6. Logistic regression: P(pass | hours studied)")
    x, y = X_TOY[:, None], torch.tensor([[0.0], [0.0], [1.0]])
    linear = nn.Linear(1, 1)
    criterion = nn.BCELoss()  # expects probabilities, hence the sigmoid below
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.1)
    for epoch in range(1, 1001):
        loss = criterion(torch.sigmoid(linear(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if epoch in (1, 1000):
            print(f"  epoch {epoch:4d}: BCE {loss.item():.4f}")
    hours = torch.linspace(0, 10, 200)[:, None]
    with torch.no_grad():
        probability = torch.sigmoid(linear(hours)).squeeze(1)
    crossing = hours[probability >= 0.5][0].item()  # first x with P >= 0.5
    check("P crosses 0.5 between x = 2 and x = 3", 2.0 < crossing < 3.0, True)
    print(f"  crossing at x = {crossing:.2f}")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(hours.squeeze(1), probability, label="P(y = 1)")
    ax.axhline(0.5, color="red", linestyle="--", label="threshold 0.5")
    ax.plot(X_TOY, y.squeeze(1), "o", label="data")
    ax.set(xlabel="x (hours)", ylabel="probability of passing", title="Logistic regression")
    ax.legend()
    save_figure(fig, out / "logistic_curve.png")
    return crossing


# %% 7. Binary cross-entropy, by the numbers
def bce_table() -> None:
    print("\n# 7. Binary cross-entropy: -(y log p + (1 - y) log(1 - p))")
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    p = torch.tensor([0.2, 0.8, 0.3, 0.7])
    by_hand = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    per_sample = F.binary_cross_entropy(p, y, reduction="none")
    print("   y    p    BCE   (confident and wrong costs most)")
    for target, prob, value in zip(y.tolist(), p.tolist(), per_sample.tolist()):
        print(f"  {target:2.0f}  {prob:.1f}  {value:.3f}")
    check("BCE per sample", [round(v, 3) for v in per_sample.tolist()],
          [1.609, 0.223, 0.357, 1.204])  # fmt: skip
    check("BCE by hand equals F.binary_cross_entropy", torch.allclose(by_hand, per_sample), True)
    check("mean BCE", round(per_sample.mean().item(), 4), 0.8483)


# %% 8. The diabetes table: a Dataset, a DataLoader, a held-out split
def read_diabetes(path: Path) -> np.ndarray:
    """The table as float32 (rows x 9); anything else is a one-line DataError."""
    try:
        with open_text(path) as file, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no data": reported below instead
            table = np.loadtxt(file, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zlib.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: expected {DIABETES_FORMAT}; {reason}") from None
    if table.size == 0:
        raise DataError(f"{path}: expected {DIABETES_FORMAT}; the file has no rows")
    if table.shape[1] != 9:
        raise DataError(f"{path}: expected {DIABETES_FORMAT}; got shape {table.shape}")
    if not np.isin(table[:, -1], (0.0, 1.0)).all():
        raise DataError(f"{path}: expected {DIABETES_FORMAT}; the last column is not 0/1")
    return table


def stand_in_diabetes(rows: int = 759) -> np.ndarray:
    """A deterministic synthetic table shaped like the real one: 8 features in [-1, 1] and a
    0/1 label from a fixed linear rule plus noise, so a classifier can learn it."""
    generator = torch.Generator().manual_seed(759)
    features = torch.rand(rows, 8, generator=generator) * 2 - 1
    rule = torch.tensor([0.4, 2.0, 0.2, 0.1, 0.3, 1.2, 0.6, 0.5])
    noise = 0.5 * torch.randn(rows, generator=generator)
    labels = (features @ rule + 0.8 + noise > 0).float()
    return torch.cat([features, labels[:, None]], dim=1).numpy()


def load_diabetes(args) -> tuple[np.ndarray, str]:
    try:
        path = fetch_file(args.data_dir, DIABETES, url=DIABETES_URL, md5=DIABETES_MD5,
                          offline=args.offline)  # fmt: skip
    except DataUnavailable as error:
        use_stand_in("diabetes", str(error), f"download {DIABETES_URL} to <data root>/{DIABETES}")
        return stand_in_diabetes(), "stand-in"
    return read_diabetes(path), str(path)


class DiabetesDataset(Dataset):
    """Rows of the table as (8 features, 1 label) float tensors."""

    def __init__(self, table: np.ndarray):
        self.x = torch.from_numpy(table[:, :-1])
        self.y = torch.from_numpy(table[:, -1:])  # keep a (rows, 1) shape, like the model output

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def diabetes_classifier(args) -> dict:
    print("\n# 8. Multi-feature logistic regression on the diabetes table")
    table, source = load_diabetes(args)
    dataset = DiabetesDataset(table)
    print(f"  {source}: {len(dataset)} rows x {table.shape[1]} columns, "
          f"{table[:, -1].mean():.1%} labelled 1")  # fmt: skip
    # Hold out 20% that the model never trains on: its accuracy there estimates new patients.
    held_out_size = len(dataset) // 5
    train_set, test_set = random_split(
        dataset,
        [len(dataset) - held_out_size, held_out_size],
        generator=torch.Generator().manual_seed(args.seed),  # the same split every run
    )
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=256)
    share_of_ones = dataset.y[test_set.indices].mean().item()
    majority = max(share_of_ones, 1 - share_of_ones)
    print(f"  split: {len(train_set)} training rows, {len(test_set)} held-out rows; "
          f"always guessing the commoner label scores {majority:.3f}")  # fmt: skip

    torch.manual_seed(args.seed)  # the same initial weights whatever ran before
    net = nn.Sequential(  # 8 features -> 6 -> 4 -> 1 probability
        nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid()
    ).to(args.device)
    criterion = nn.BCELoss()
    # SGD as in the notes, plus momentum (lesson 13): plain SGD at lr 0.01 needs thousands of
    # epochs to get past "always predict 1" on this table.
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    epochs = min(args.epochs, 10) if args.quick else args.epochs
    loss_history = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        net.train()
        total = 0.0
        for x, y in train_loader:
            x, y = to_device((x, y), args.device)
            loss = criterion(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
        loss_history.append(total / len(train_set))

        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = to_device((x, y), args.device)
                correct += ((net(x) >= 0.5).float() == y).sum().item()  # P >= 0.5 -> label 1
        held_out = correct / len(test_set)
        print(f"  epoch {epoch:3d}/{epochs}: train BCE {loss_history[-1]:.4f}, held-out "
              f"accuracy {held_out:.3f} ({time.perf_counter() - started:.2f} s)")  # fmt: skip
    print(f"  held-out accuracy {held_out:.3f} on {len(test_set)} rows (trained on "
          f"{len(train_set)}; target for the full run on the real table: >= 0.72)")  # fmt: skip
    return {"loss_history": loss_history, "held_out_accuracy": held_out,
            "held_out_size": len(test_set), "train_size": len(train_set),
            "majority_baseline": majority, "table_shape": list(table.shape)}  # fmt: skip


# %% 9. Stacked linear layers collapse into one
def stacked_linear_collapse() -> None:
    print("\n# 9. Two linear layers with nothing between them are one linear layer")
    first, second = nn.Linear(8, 6), nn.Linear(6, 1)
    # second(first(x)) = W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2)
    merged = nn.Linear(8, 1)
    with torch.no_grad():
        merged.weight.copy_(second.weight @ first.weight)
        merged.bias.copy_(second.weight @ first.bias + second.bias)
    x = torch.randn(100, 8)
    with torch.no_grad():
        gap = (second(first(x)) - merged(x)).abs().max().item()
        gap_relu = (second(torch.relu(first(x))) - merged(x)).abs().max().item()
    check("max |Linear(Linear(x)) - merged Linear(x)| < 1e-5", gap < 1e-5, True)
    print(f"  largest difference: {gap:.1e}; with a ReLU between the layers: {gap_relu:.2f}")
    print("  Depth only adds power with a non-linearity between the layers.")


# %% main
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON, epochs=40, batch_size=32)
    references.clear()
    with single_thread():
        exhaustive_search(args.out)
        gradient_descent_by_hand()
        fit = thermometer_by_hand()
        params = thermometer_autograd(fit["t_un"])
        plot_thermometer(params, args.out)
        linear_prediction = linear_regression()
        crossing = logistic_regression(args.out)
        bce_table()
        diabetes = diabetes_classifier(args)
        stacked_linear_collapse()

    metrics = {
        "held_out_accuracy": diabetes["held_out_accuracy"],
        **diabetes,
        "thermometer_loss_history": fit["losses"][::500] + fit["losses"][-1:],
        "linear_prediction_at_4": linear_prediction,
        "logistic_crossing": crossing,
        **references.metrics(),
    }
    write_metrics(args.out, metrics, headline="held_out_accuracy")
    return metrics


if __name__ == "__main__":
    main()
