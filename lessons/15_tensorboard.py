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
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).
Each run gets its own time-stamped folder; only the newest few are kept.

Time: --quick ~5 s, full ~20 s (3 epochs) on a 2-core CPU.
"""

# %% Imports
from __future__ import annotations

import re
import shutil
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from common.cli import lesson_args
from common.data import quick_subset, vision_dataset
from common.device import loader_options, synchronize, to_device
from common.report import save_figure, write_metrics

LESSON = Path(__file__).stem
KEEP_RUNS = 3  # old runs beyond this many are deleted, so the folder does not grow forever
RUN_NAME = re.compile(r"^\d{8}-\d{6}(-\d+)?$")
EVENT_FILE = "events.out.tfevents."


# %% Models
def seed_net() -> nn.Sequential:
    """The notes' Sequential network (the one lesson 07 builds): 3 x 28 x 28 images -> 10 scores."""
    return nn.Sequential(
        nn.Conv2d(3, 20, 5), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.Linear(500, 10),
    )  # fmt: skip


def fashion_mlp() -> nn.Sequential:
    """A small classifier whose training we watch."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))


# %% Runs: one folder each, newest few kept
def event_files_only(folder: Path) -> bool:
    """True if `folder` holds nothing but TensorBoard event files (safe to delete)."""
    return all(p.is_dir() or p.name.startswith(EVENT_FILE) for p in folder.rglob("*"))


def new_run_dir(runs: Path, keep: int = KEEP_RUNS) -> Path:
    """A fresh time-stamped run folder under `runs`, after deleting all but the newest runs."""
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(p for p in runs.iterdir() if p.is_dir() and RUN_NAME.match(p.name))
    for folder in old[: max(0, len(old) - (keep - 1))]:
        if event_files_only(folder):  # never delete anything we did not write
            shutil.rmtree(folder)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run, suffix = runs / stamp, 2
    while run.exists():  # two runs within one second
        run, suffix = runs / f"{stamp}-{suffix}", suffix + 1
    return run


# %% 1. Scalars, images and a graph
def add_graph(writer: SummaryWriter, model: nn.Module, example: torch.Tensor) -> None:
    """`writer.add_graph` runs one forward pass of `example` and records the layers it meets."""
    with warnings.catch_warnings():
        # add_graph traces with torch.jit.trace, which recent torch versions call deprecated;
        # the warning concerns TensorBoard's internals, not this code.
        warnings.simplefilter("ignore", FutureWarning)
        writer.add_graph(model, example)


def log_basics(writer: SummaryWriter, raw_test_set, test_set) -> None:
    print("\n# 1. Scalars, images and a graph")
    for x in range(100):
        writer.add_scalar("y=x", x, global_step=x)  # tag, y value, x value (the step)
    print("  add_scalar('y=x', x, x) for x in 0..99")

    image, label = raw_test_set[0]  # a PIL image, as the dataset stores it
    array = np.array(image)[:, :, None]  # H x W -> H x W x C (C = 1 grey channel)
    writer.add_image("fashion/one_image", array, global_step=0, dataformats="HWC")
    print(f"  add_image: one {array.shape} {array.dtype} array (dataformats='HWC'), label {label}")

    loader = DataLoader(test_set, batch_size=16)
    for step, (images, _) in zip(range(3), loader):
        writer.add_images("fashion/batch", images, global_step=step)  # N x C x H x W in [0, 1]
    print(f"  add_images: 3 batches of {list(images.shape)} (steps 0, 1, 2), shown as grids")

    net = seed_net()
    example = torch.ones(64, 3, 28, 28)
    add_graph(writer, net, example)
    print(f"  add_graph: the Sequential net, ones(64, 3, 28, 28) -> {list(net(example).shape)}")


# %% 2. Training curves
def train_and_log(writer: SummaryWriter, args, train_set, test_set) -> tuple[list[float], float]:
    print("\n# 2. Training curves")
    options = loader_options(args.device)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, **options)
    test_loader = DataLoader(test_set, batch_size=256, **options)
    model = fashion_mlp().to(args.device)
    images, _ = next(iter(train_loader))
    add_graph(writer, model, to_device(images, args.device))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    log_every = max(1, len(train_loader) // 10)  # about ten points per epoch
    logged, step, accuracy = [], 0, 0.0
    for epoch in range(1, args.epochs + 1):
        synchronize(args.device)
        started = time.perf_counter()
        model.train()
        running, count = 0.0, 0
        for images, labels in train_loader:
            images, labels = to_device((images, labels), args.device)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running, count, step = running + loss.item(), count + 1, step + 1
            if count == log_every:  # log the mean of the last few batches, not every one
                writer.add_scalar("train/loss", running / count, global_step=step)
                logged.append(running / count)
                running, count = 0.0, 0

        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for images, labels in test_loader:
                images, labels = to_device((images, labels), args.device)
                logits = model(images)
                test_loss += loss_fn(logits, labels).item() * len(labels)
                correct += (logits.argmax(1) == labels).sum().item()
        test_loss, accuracy = test_loss / len(test_set), correct / len(test_set)
        # Same x axis as train/loss (batches seen), so TensorBoard lines the curves up.
        writer.add_scalar("test/loss", test_loss, global_step=step)
        writer.add_scalar("test/accuracy", accuracy, global_step=step)
        for name, parameter in model.named_parameters():
            writer.add_histogram(f"weights/{name}", parameter, global_step=step)
        synchronize(args.device)
        print(
            f"  epoch {epoch}/{args.epochs}: train loss {logged[-1]:.4f} | test loss "
            f"{test_loss:.4f} | test accuracy {accuracy:.4f} | "
            f"{time.perf_counter() - started:.1f} s"
        )
    return logged, accuracy


# %% 3. Reading the event files back
def read_back(run: Path) -> dict:
    """What TensorBoard will show for `run`: {kind: {tag: [(step, value), ...]}} and the graph."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0 = keep every event (by default TensorBoard samples long series)
    accumulator = EventAccumulator(
        str(run), size_guidance={"scalars": 0, "images": 0, "histograms": 0}
    )
    accumulator.Reload()
    tags = accumulator.Tags()
    found = {
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
    return found


def describe(name: str, found: dict) -> None:
    print(f"  run {name}: graph with {found['graph_nodes']} nodes")
    for kind in ("scalars", "images", "histograms"):
        for tag, events in found[kind].items():
            steps = [step for step, _ in events]
            last = events[-1][1]
            last = f"{last:.4g}" if kind == "scalars" else f"{last}"
            what = {"scalars": "last value", "images": "last size (h, w)", "histograms": "values"}
            print(
                f"    {kind:<10} {tag:<22} {len(events):>3} events, steps {steps[0]}..{steps[-1]}, "
                f"{what[kind]} {last}"
            )


def plot_curves(found: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    steps, losses = zip(*found["scalars"]["train/loss"])
    left.plot(steps, losses)
    left.set(xlabel="batch", ylabel="train loss", title="train/loss, read from the event file")
    steps, accuracy = zip(*found["scalars"]["test/accuracy"])
    right.plot(steps, accuracy, "o-")
    right.set(xlabel="batch", ylabel="test accuracy", title="test/accuracy, after each epoch")
    fig.tight_layout()
    save_figure(fig, path)


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# %% main
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON, epochs=3, batch_size=64)
    from torchvision.transforms import v2

    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    raw_test_set = vision_dataset("FashionMNIST", args, train=False)
    train_set = vision_dataset("FashionMNIST", args, train=True, transform=to_tensor)
    test_set = vision_dataset("FashionMNIST", args, train=False, transform=to_tensor)
    train_set, test_set = (
        quick_subset(train_set, 512, args.quick),
        quick_subset(test_set, 256, args.quick),
    )

    runs = args.out / "runs"
    run = new_run_dir(runs)
    print(f"logging to {display(run)}")
    # Two sub-folders = two runs in TensorBoard (each run holds one graph).
    with SummaryWriter(log_dir=str(run / "basics")) as writer:
        log_basics(writer, raw_test_set, test_set)
    with SummaryWriter(log_dir=str(run / "training")) as writer:
        loss_history, accuracy = train_and_log(writer, args, train_set, test_set)
    # Leaving the `with` closes the writers, which flushes everything to disk.

    print("\n# 3. What the event files contain (read back with EventAccumulator)")
    found = {name: read_back(run / name) for name in ("basics", "training")}
    for name, contents in found.items():
        describe(name, contents)
    plot_curves(found["training"], args.out / "training_curves.png")
    kept = sorted(p.name for p in runs.iterdir() if p.is_dir())

    print(f"\nruns kept: {', '.join(kept)} (at most {KEEP_RUNS})")
    print("To see them in the browser (http://localhost:6006):")
    print(f"    tensorboard --logdir {display(runs)}")
    print(f"\nTest accuracy after {args.epochs} epochs: {accuracy:.4f}")
    metrics = {
        "test_accuracy": accuracy,
        "train_loss_history": loss_history,
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
    write_metrics(args.out, metrics, headline="test_accuracy")
    return metrics


if __name__ == "__main__":
    main()
