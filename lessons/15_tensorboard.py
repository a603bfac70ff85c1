"""TensorBoard: log scalars, images, a model graph and training curves, then read them back.

What you will learn
  - `SummaryWriter(log_dir)`: every run is a folder of event files; TensorBoard compares runs
  - `add_scalar` (the curve y = x), `add_image` (one H x W x C array), `add_images` (a batch)
  - `add_graph` (a Sequential network traced with an example input), `add_histogram`
  - logging the training curves of a small FashionMNIST model as it trains
  - reading the event files back with TensorBoard's `EventAccumulator`, to check what was logged
  - opening the dashboard: `tensorboard --logdir outputs/15_tensorboard/runs`

How to run
    python lessons/15_tensorboard.py           # logs a run, prints what it logged
    python lessons/15_tensorboard.py --quick   # a few batches, seconds
    tensorboard --logdir outputs/15_tensorboard/runs   # then open http://localhost:6006
Each run gets its own time-stamped folder; only the newest few are kept.

Time: --quick ~6 s, full ~40 s (3 epochs) on a 2-core CPU.
"""

# %%
import re
import shutil
import warnings
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.tensorboard import SummaryWriter
from torchvision.transforms import v2

from common.cli import lesson_args
from common.data import vision_dataset
from common.report import progress, save_figure, write_metrics

KEEP_RUNS = 3  # older runs beyond this many are deleted, so the folder does not grow forever
RUN_NAME = r"\d{8}-\d{6}(-\d+)?"  # a run folder: its date-time stamp
EVENT_FILE = "events.out.tfevents."

if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="15_tensorboard", epochs=3, batch_size=64)
    device = args.device

# %% [markdown]
# ## 1. The data
# FashionMNIST as lesson 03 loads it: a transform turns each PIL image into a 1×28×28 float
# tensor in $[0, 1]$, and a `DataLoader` batches them. One copy without the transform keeps the
# raw PIL images, to log one exactly as stored. `--quick` uses the first images only.

# %%
if __name__ == "__main__":
    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    raw_test_set = vision_dataset("FashionMNIST", args, train=False)
    train_set = vision_dataset("FashionMNIST", args, train=True, transform=to_tensor)
    test_set = vision_dataset("FashionMNIST", args, train=False, transform=to_tensor)
    if args.quick:
        train_set, test_set = Subset(train_set, range(512)), Subset(test_set, range(256))
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=256)
    print(f"FashionMNIST: {len(train_set):,} training and {len(test_set):,} test images")

# %% [markdown]
# ## 2. A run folder and a writer
# A `SummaryWriter` appends events (a value, an image, a graph, each with a step) to an event
# file in its `log_dir`. TensorBoard shows each folder of event files as one *run*, so every
# execution of this lesson gets a fresh time-stamped folder, with two sub-runs: `basics` and
# `training`. Only the newest few runs are kept.


# %%
def event_files_only(folder: Path) -> bool:
    """True if `folder` holds nothing but TensorBoard event files (safe to delete)."""
    return all(p.is_dir() or p.name.startswith(EVENT_FILE) for p in folder.rglob("*"))


def new_run_dir(runs: Path, keep: int = KEEP_RUNS) -> Path:
    """A fresh time-stamped run folder under `runs`, after deleting all but the newest runs."""
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(p for p in runs.iterdir() if p.is_dir() and re.fullmatch(RUN_NAME, p.name))
    for folder in old[: max(0, len(old) - (keep - 1))]:
        if event_files_only(folder):  # never delete anything we did not write
            shutil.rmtree(folder)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run, suffix = runs / stamp, 2
    while run.exists():  # two runs within one second
        run, suffix = runs / f"{stamp}-{suffix}", suffix + 1
    return run


def shown(path: Path) -> str:
    """`path` relative to the current folder when it lies below it (shorter to read)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    # The notes write to a `logs` folder with the tensorboardX package; torch.utils.tensorboard
    # is the same API built into PyTorch, and one folder per run keeps runs apart.
    runs = args.out / "runs"
    run = new_run_dir(runs)
    writer = SummaryWriter(log_dir=str(run / "basics"))
    print(f"logging to {shown(run / 'basics')}")

# %% [markdown]
# ## 3. A scalar: the curve $y = x$
# `add_scalar(tag, value, global_step)` adds one point to the curve named `tag`: the value is its
# height, the step its position on the x axis. TensorBoard's *Scalars* tab draws the curve.


# %%
def log_line(writer: SummaryWriter, points: int = 100) -> int:
    """Log y = x for x in 0..points-1; returns how many points were logged."""
    for x in range(points):
        writer.add_scalar("y=x", x, global_step=x)
    return points


if __name__ == "__main__":
    print(f"add_scalar('y=x', x, x) for x in 0..{log_line(writer) - 1}")

# %% [markdown]
# ## 4. Images
# `add_image` expects C×H×W by default; an array laid out H×W×C (as NumPy and PIL store
# images) needs `dataformats="HWC"`. `add_images` takes a batch, N×C×H×W, and shows it as one grid
# per step; TensorBoard's *Images* tab has a slider over the steps.


# %%
def log_images(writer: SummaryWriter, raw_test_set, test_set, batches: int = 3) -> dict:
    """One raw image as an HWC array, then `batches` batches; returns what was logged."""
    image, label = raw_test_set[0]  # a PIL image, as the dataset stores it
    array = np.array(image)[:, :, None]  # H x W -> H x W x C, with C = 1 grey channel
    writer.add_image("fashion/one_image", array, global_step=0, dataformats="HWC")
    for step, (images, _) in zip(range(batches), DataLoader(test_set, batch_size=16)):
        writer.add_images("fashion/batch", images, global_step=step)  # N x C x H x W
    return {"array": array, "label": label, "batch": list(images.shape)}


if __name__ == "__main__":
    logged_images = log_images(writer, raw_test_set, test_set)
    array = logged_images["array"]
    print(f"add_image: one {array.shape} {array.dtype} array (dataformats='HWC'), "
          f"label {logged_images['label']}")  # fmt: skip
    print(f"add_images: 3 batches of {logged_images['batch']} (steps 0, 1, 2), shown as grids")

# %% [markdown]
# ## 5. A model graph
# `add_graph(model, example)` runs one forward pass of the example input and records every layer
# it meets, with the shapes between them (the *Graphs* tab). A run holds one graph. Closing the
# writer flushes everything to disk.


# %%
def seed_net() -> nn.Sequential:
    """The notes' Sequential network (the one lesson 07 builds): 3 x 28 x 28 images -> 10 scores."""
    return nn.Sequential(
        nn.Conv2d(3, 20, 5), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.Linear(500, 10),
    )  # fmt: skip


def add_graph(writer: SummaryWriter, model: nn.Module, example: torch.Tensor) -> None:
    with warnings.catch_warnings():  # add_graph traces with torch.jit.trace, which recent
        warnings.simplefilter("ignore", FutureWarning)  # torch versions call deprecated
        writer.add_graph(model, example)


if __name__ == "__main__":
    net, example = seed_net(), torch.ones(64, 3, 28, 28)
    add_graph(writer, net, example)
    writer.close()
    print(f"add_graph: the Sequential net, ones(64, 3, 28, 28) -> {list(net(example).shape)}")

# %% [markdown]
# ## 6. Training curves
# The training loop of lesson 06, plus a few `add_scalar` calls: the mean training loss every
# tenth of an epoch, the test loss and accuracy after each epoch (at the same step, the number of
# batches seen, so the curves line up), and a histogram of every weight (*Histograms* tab).


# %%
def fashion_mlp() -> nn.Sequential:
    """A small classifier whose training we watch."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))


def evaluate(model, loader, loss_fn, device) -> tuple[float, float]:
    """(mean loss, accuracy) on a held-out split."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for X, y in loader:
            X, y = X.to(device), y.to(device)
            logits = model(X)
            loss_sum += loss_fn(logits, y).item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
    return loss_sum / len(loader.dataset), correct / len(loader.dataset)


def train_and_log(writer, model, train_loader, test_loader, epochs: int, device) -> dict:
    """Train with Adam, logging as it goes; returns the logged losses and test results."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    log_every = max(1, len(train_loader) // 10)  # about ten points per epoch
    history = {"train_loss_history": [], "test_losses": [], "test_accuracies": []}
    running, count, step = 0.0, 0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        for X, y in progress(train_loader, desc=f"epoch {epoch}"):
            X, y = X.to(device), y.to(device)
            loss = loss_fn(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running, count, step = running + loss.item(), count + 1, step + 1
            if count == log_every:  # log the mean of the last few batches, not every one
                writer.add_scalar("train/loss", running / count, global_step=step)
                history["train_loss_history"].append(running / count)
                running, count = 0.0, 0
        test_loss, accuracy = evaluate(model, test_loader, loss_fn, device)
        writer.add_scalar("test/loss", test_loss, global_step=step)
        writer.add_scalar("test/accuracy", accuracy, global_step=step)
        for name, parameter in model.named_parameters():
            writer.add_histogram(f"weights/{name}", parameter, global_step=step)
        history["test_losses"].append(test_loss)
        history["test_accuracies"].append(accuracy)
        print(f"epoch {epoch}/{epochs}: train loss {history['train_loss_history'][-1]:.4f} | "
              f"test loss {test_loss:.4f} | test accuracy {accuracy:.4f}")  # fmt: skip
    return history


if __name__ == "__main__":
    model = fashion_mlp().to(device)
    with SummaryWriter(log_dir=str(run / "training")) as training_writer:
        add_graph(training_writer, model, next(iter(train_loader))[0].to(device))
        history = train_and_log(training_writer, model, train_loader, test_loader,
                                args.epochs, device)  # fmt: skip
    # Leaving the `with` block closes the writer, which flushes it to disk.

# %% [markdown]
# ## 7. What the event files hold
# TensorBoard reads event files with an `EventAccumulator`; so can we, to check that everything
# logged reached the disk. (By default it keeps a sample of long series; size 0 keeps them all.)


# %%
def read_back(folder: Path) -> dict:
    """What TensorBoard will show for `folder`: {kind: {tag: [(step, value), ...]}}, graph size."""
    accumulator = EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0}
    )
    accumulator.Reload()
    tags = accumulator.Tags()
    return {
        "scalars": {
            t: [(e.step, e.value) for e in accumulator.Scalars(t)] for t in tags["scalars"]
        },
        "images": {
            t: [(e.step, (e.height, e.width)) for e in accumulator.Images(t)]
            for t in tags["images"]
        },
        "histograms": {
            t: [(e.step, int(e.histogram_value.num)) for e in accumulator.Histograms(t)]
            for t in tags["histograms"]
        },
        "graph_nodes": len(accumulator.Graph().node) if tags["graph"] else 0,
    }


if __name__ == "__main__":
    found = {name: read_back(run / name) for name in ("basics", "training")}
    what = {"scalars": "last value", "images": "last size (h, w)", "histograms": "values"}
    for name, contents in found.items():
        print(f"run {name}: {len(list((run / name).glob(EVENT_FILE + '*')))} event file, "
              f"graph with {contents['graph_nodes']} nodes")  # fmt: skip
        for kind in what:
            for tag, events in contents[kind].items():
                last = f"{events[-1][1]:.4g}" if kind == "scalars" else f"{events[-1][1]}"
                print(f"  {kind:<10} {tag:<22} {len(events):>3} events, "
                      f"steps {events[0][0]}..{events[-1][0]}, {what[kind]} {last}")  # fmt: skip

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(*zip(*found["training"]["scalars"]["train/loss"]))
    left.set(xlabel="batch", ylabel="train loss", title="train/loss, read from the event file")
    right.plot(*zip(*found["training"]["scalars"]["test/accuracy"]), "o-")
    right.set(xlabel="batch", ylabel="test accuracy", title="test/accuracy, after each epoch")
    save_figure(fig, args.out / "training_curves.png")

# %% [markdown]
# ## 8. Opening TensorBoard
# Start the dashboard on the runs folder and open the address it prints in a browser; it finds
# every run below that folder and refreshes while a run is still writing.

# %%
if __name__ == "__main__":
    kept = sorted(p.name for p in runs.iterdir() if p.is_dir())
    print(f"runs kept: {', '.join(kept)} (at most {KEEP_RUNS})")
    print("To see them in the browser (http://localhost:6006):")
    print(f"    tensorboard --logdir {shown(runs)}")
    metrics = {
        "test_accuracy": history["test_accuracies"][-1],
        **history,
        "run_dir": str(run),
        "runs_kept": kept,
        "logged": {
            name: {
                kind: {tag: len(events) for tag, events in contents[kind].items()}
                for kind in ("scalars", "images", "histograms")
            }
            | {"graph_nodes": contents["graph_nodes"]}
            for name, contents in found.items()
        },
    }
    print(f"test accuracy after {args.epochs} epochs: {metrics['test_accuracy']:.4f}")
    write_metrics(args.out, metrics, headline="test_accuracy")
