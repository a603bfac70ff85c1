"""The notes' recipes against the course's, side by side on your machine: time to quality.

For each task this trains the source notes' recipe (their model, optimizer, learning rate, batch
size, epochs and per-image transform pipeline), then the course lesson's recipe for the same
task (its model, optimizer, schedule, and the data converted once into tensors), on the same real
data and device, one after the other. Both are scored on the test split after every epoch. The
table gives each recipe's final accuracy and time, and how long the course's recipe takes to
reach the notes' final accuracy (time to quality, as MLPerf measures training), also as a share
of the notes' total time.

Tasks: the notes' recipe -> the course's
  fashion-mlp  FashionMNIST, MLP 784-512-512-10, SGD lr 1e-3, batch 64, 10 epochs -> lesson 06
  fashion-cnn  FashionMNIST, CNN, SGD lr 1e-3, batch 64, 5 epochs -> lesson 07
  mnist-cnn    MNIST, CNN (conv 10/20 5x5, fc 320 -> 10), SGD lr 0.01 momentum 0.5, batch 64,
               10 epochs -> lesson 07 --dataset mnist
  cifar10-net  CIFAR-10, the tutorial's Net, SGD lr 1e-3 momentum 0.9, batch 4, 2 epochs
               -> lesson 08 --image-folder (the JPEG copy when the data root has CIFAR10-jpg/)
  names-gru    names -> language, 2-layer bidirectional GRU (hidden 100), Adam lr 1e-3, batch
               256, 100 epochs -> lesson 11

How to run
    python benchmarks/notes_vs_course.py                      # every task (~25 min, 2-core CPU)
    python benchmarks/notes_vs_course.py --task fashion-mlp   # one task (repeat for more)
    python benchmarks/notes_vs_course.py --quick              # every pair on a few batches
    python benchmarks/notes_vs_course.py --json results.json --device cuda

The clock counts training: every batch of every epoch, and for the course also its one-time
conversion of both splits into tensors. The test after each epoch is not counted, for neither.
Results (metrics.json, accuracy_vs_time.png) go to outputs/benchmarks/notes_vs_course/.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import transforms
from torchvision.datasets import ImageFolder

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"
if str(LESSONS_DIR) not in sys.path:
    sys.path.insert(0, str(LESSONS_DIR))

from common import LessonError  # noqa: E402
from common.cli import lesson_args  # noqa: E402
from common.data import DataError, vision_dataset  # noqa: E402
from common.device import describe, seed_everything  # noqa: E402
from common.report import save_figure, write_metrics  # noqa: E402
from common.settings import atomic_path  # noqa: E402

QUICK_TRAIN, QUICK_TEST, QUICK_EPOCHS = 512, 256, 2
# The notes' recipes keep their own transforms: the classic `ToTensor` is also the fair choice
# here, 2.6x faster per image on a CPU than its transforms.v2 spelling (ToImage + ToDtype).
TO_TENSOR = transforms.ToTensor()


def lesson(stem: str):
    """`lessons/<stem>.py` imported: its definitions only (its guarded blocks do not run)."""
    module_name = f"lesson_{stem}"  # the name the tests import it under, so it loads once
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, LESSONS_DIR / f"{stem}.py")
        sys.modules[module_name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module_name])
    return sys.modules[module_name]


# --- the notes' two models that no lesson defines ------------------------------------------------
class NotesFashionCNN(nn.Module):
    """The notes' FashionMNIST CNN (000 §7), as written: no ReLU after the second convolution."""

    def __init__(self):
        super().__init__()
        self.conv_stack = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.MaxPool2d(2),
        )  # fmt: skip
        self.linear_stack = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, 10)
        )

    def forward(self, x):
        return self.linear_stack(self.conv_stack(x))


class NotesMnistCNN(nn.Module):
    """The notes' MNIST CNN (002): conv 1->10 and 10->20 (5x5), pool, ReLU, fc 320 -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 5)
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(320, 10)

    def forward(self, x):
        x = F.relu(self.pool(self.conv1(x)))
        x = F.relu(self.pool(self.conv2(x)))
        return self.fc(x.flatten(1))


# --- one recipe: train, score after every epoch, keep the clock ---------------------------------
@dataclass
class Result:
    recipe: str
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, seconds, accuracy

    @property
    def accuracy(self) -> float:
        return self.history[-1]["accuracy"]

    @property
    def seconds(self) -> float:
        return self.history[-1]["seconds"]


def train_and_score(who: str, recipe: str, epochs: int, train_one_epoch, score, setup_seconds=0.0):
    """Run `train_one_epoch` `epochs` times, `score` (test accuracy) after each; the clock holds
    the training time plus `setup_seconds`. Every lesson loop calls `loss.item()` per batch,
    which waits for the device, so wall time here is device time too."""
    result, clock = Result(recipe), setup_seconds
    print(f"  {who}: {recipe}")
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        train_one_epoch()
        clock += time.perf_counter() - started
        accuracy = score()  # not on the clock
        result.history.append({"epoch": epoch, "seconds": round(clock, 2), "accuracy": accuracy})
        print(f"    epoch {epoch:3d}/{epochs}: test accuracy {accuracy:.4f} | {clock:7.1f} s")
    return result


def seconds_to_reach(history: list[dict], target: float) -> tuple[float, int] | None:
    """(clock seconds, epoch) at the end of the first epoch that scores at least `target`."""
    return next(((p["seconds"], p["epoch"]) for p in history if p["accuracy"] >= target), None)


class Bench:
    """What every task needs: the flags, the device, seeded models and loaders, quick limits."""

    def __init__(self, args):
        self.args, self.device, self.quick = args, args.device, args.quick
        self.loss_fn = nn.CrossEntropyLoss()

    def epochs(self, count: int) -> int:
        return min(count, QUICK_EPOCHS) if self.quick else count

    def limit(self, train: bool) -> int | None:
        return (QUICK_TRAIN if train else QUICK_TEST) if self.quick else None

    def model(self, make) -> nn.Module:
        seed_everything(self.args.seed)  # both recipes start from their seed's weights
        return make().to(self.device)

    def loader(self, dataset, batch_size: int, shuffle: bool, **options) -> DataLoader:
        order = torch.Generator().manual_seed(self.args.seed)
        return DataLoader(dataset, batch_size, shuffle=shuffle, generator=order, **options)

    def test_accuracy(self, model, test_loader) -> float:
        return lesson("07_cnn").evaluate(model, test_loader, self.loss_fn, self.device)[1]

    def notes_images(self, dataset, train: bool):
        """A dataset of (image, label), cut to the quick limit by a spread over all of it (an
        image folder lists one class after another)."""
        limit = self.limit(train)
        if limit is None:
            return dataset
        return Subset(dataset, range(0, len(dataset), max(len(dataset) // limit, 1))[:limit])


# --- the tasks ----------------------------------------------------------------------------------
def fashion_mlp(bench: Bench):
    mlp, device = lesson("06_mlp"), bench.device
    # The notes' pipeline: ToTensor on every image, every epoch; the loader does not shuffle.
    train = vision_dataset("FashionMNIST", bench.args, train=True, transform=TO_TENSOR)
    test = vision_dataset("FashionMNIST", bench.args, train=False, transform=TO_TENSOR)
    notes_train = bench.loader(bench.notes_images(train, True), 64, shuffle=False)
    notes_test = bench.loader(bench.notes_images(test, False), 1000, shuffle=False)
    model = bench.model(mlp.NeuralNetwork)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    notes = train_and_score(
        "notes", "SGD lr 1e-3, batch 64, 10 epochs, ToTensor per image", bench.epochs(10),
        lambda: mlp.train_loop(notes_train, model, bench.loss_fn, optimizer, device),
        lambda: bench.test_accuracy(model, notes_test),
    )  # fmt: skip

    started = time.perf_counter()  # lesson 06: one tensor per split, standardized
    train_set = mlp.load_split("FashionMNIST", bench.args, True, bench.limit(True))
    test_set = mlp.load_split("FashionMNIST", bench.args, False, bench.limit(False))
    mlp.normalize(train_set, test_set)
    setup = time.perf_counter() - started
    train_loader, test_loader = (
        bench.loader(train_set, 128, True),
        bench.loader(test_set, 1000, False),
    )
    model = bench.model(mlp.NeuralNetwork)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    course = train_and_score(
        "course", "lesson 06: Adam lr 1e-3, batch 128, 10 epochs, standardized tensors",
        bench.epochs(10),
        lambda: mlp.train_loop(train_loader, model, bench.loss_fn, optimizer, device),
        lambda: bench.test_accuracy(model, test_loader), setup,
    )  # fmt: skip
    return notes, course


def cnn_course(bench: Bench, dataset: str) -> Result:
    """Lesson 07's recipe: its CNN, Adam lr 1e-3, batch 128, 4 epochs, lr / 10 for the last."""
    cnn, mlp, device = lesson("07_cnn"), lesson("06_mlp"), bench.device
    started = time.perf_counter()
    train_set = cnn.load_split(dataset, bench.args, True, bench.limit(True))
    test_set = cnn.load_split(dataset, bench.args, False, bench.limit(False))
    mlp.normalize(train_set, test_set)  # lesson 07 standardizes as lesson 06 does
    setup = time.perf_counter() - started
    train_loader, test_loader = (
        bench.loader(train_set, 128, True),
        bench.loader(test_set, 1000, False),
    )
    model = bench.model(cnn.CNN)
    epochs = bench.epochs(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(epochs - 1, 1))

    def one_epoch():
        cnn.train_epoch(model, train_loader, bench.loss_fn, optimizer, device)
        scheduler.step()

    return train_and_score(
        "course", "lesson 07: Adam lr 1e-3 (/10 in the last epoch), batch 128, 4 epochs, "
        "standardized tensors", epochs, one_epoch,
        lambda: bench.test_accuracy(model, test_loader), setup,
    )  # fmt: skip


def notes_cnn(bench: Bench, dataset, make_model, recipe, epochs, optimizer, shuffle, transform):
    """A notes' CNN recipe: `transform` on every image, every epoch; plain SGD steps."""
    cnn = lesson("07_cnn")
    train = vision_dataset(dataset, bench.args, train=True, transform=transform)
    test = vision_dataset(dataset, bench.args, train=False, transform=transform)
    train_loader = bench.loader(bench.notes_images(train, True), 64, shuffle=shuffle)
    test_loader = bench.loader(bench.notes_images(test, False), 1000, shuffle=False)
    model = bench.model(make_model)
    sgd = optimizer(model.parameters())
    return train_and_score(
        "notes", recipe, bench.epochs(epochs),
        lambda: cnn.train_epoch(model, train_loader, bench.loss_fn, sgd, bench.device),
        lambda: bench.test_accuracy(model, test_loader),
    )  # fmt: skip


def fashion_cnn(bench: Bench):
    recipe = "SGD lr 1e-3, batch 64, 5 epochs, ToTensor per image"
    notes = notes_cnn(
        bench, "FashionMNIST", NotesFashionCNN, recipe, 5,
        lambda parameters: torch.optim.SGD(parameters, lr=1e-3), False, TO_TENSOR,
    )  # fmt: skip
    return notes, cnn_course(bench, "FashionMNIST")


def mnist_cnn(bench: Bench):
    # The notes normalize with MNIST's mean and std (0.1307, 0.3081), on every image.
    transform = transforms.Compose([TO_TENSOR, transforms.Normalize((0.1307,), (0.3081,))])
    notes = notes_cnn(
        bench, "MNIST", NotesMnistCNN, "SGD lr 0.01 momentum 0.5, batch 64, 10 epochs, "
        "ToTensor + Normalize per image", 10,
        lambda parameters: torch.optim.SGD(parameters, lr=0.01, momentum=0.5), True, transform,
    )  # fmt: skip
    return notes, cnn_course(bench, "MNIST")


def cifar_folder(bench: Bench) -> Path | None:
    folder = (bench.args.image_folder or bench.args.data_dir / "CIFAR10-jpg").expanduser()
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    if bench.args.image_folder:
        raise DataError(f"--image-folder: {folder} has no train/ and test/ folders")
    return None


def cifar10_net(bench: Bench):
    architectures, cnn = lesson("08_cnn_architectures"), lesson("07_cnn")
    folder = cifar_folder(bench)
    notes_transform = transforms.Compose([TO_TENSOR, transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    if folder is not None:  # the notes' pipeline reads the JPEG files the course reads
        print(f"  data: the JPEG copy in {folder}")
        train = ImageFolder(str(folder / "train"), transform=notes_transform)
        test = ImageFolder(str(folder / "test"), transform=notes_transform)
    else:
        print(f"  data: torchvision's CIFAR10 (no CIFAR10-jpg/ under {bench.args.data_dir})")
        train = vision_dataset("CIFAR10", bench.args, train=True, transform=notes_transform)
        test = vision_dataset("CIFAR10", bench.args, train=False, transform=notes_transform)
    train_loader = bench.loader(bench.notes_images(train, True), 4, shuffle=True)
    test_loader = bench.loader(bench.notes_images(test, False), 1000, shuffle=False)
    model = bench.model(architectures.Net)
    sgd = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    notes = train_and_score(
        "notes", "SGD lr 1e-3 momentum 0.9, batch 4, 2 epochs, decoded + transformed per image",
        bench.epochs(2),
        lambda: cnn.train_epoch(model, train_loader, bench.loss_fn, sgd, bench.device),
        lambda: bench.test_accuracy(model, test_loader),
    )  # fmt: skip

    started = time.perf_counter()  # lesson 08: decode once into uint8 tensors, per-channel z
    if folder is not None:
        train = architectures.image_folder_split(folder, "train", bench.limit(True))
        test = architectures.image_folder_split(folder, "test", bench.limit(False), train[2])
    else:
        train = architectures.torchvision_split("CIFAR10", bench.args, True, bench.limit(True))
        test = architectures.torchvision_split("CIFAR10", bench.args, False, bench.limit(False))
    train_images, test_images = train[0].float() / 255, test[0].float() / 255
    std, mean = torch.std_mean(train_images, dim=(0, 2, 3), keepdim=True)
    std = std.clamp_min(1e-3)
    train_set = TensorDataset((train_images - mean) / std, train[1])
    test_set = TensorDataset((test_images - mean) / std, test[1])
    setup = time.perf_counter() - started
    train_loader, test_loader = (
        bench.loader(train_set, 64, True),
        bench.loader(test_set, 1000, False),
    )
    model = bench.model(architectures.Net)
    epochs = bench.epochs(12)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(sgd, max_lr=0.05, total_steps=steps)
    course = train_and_score(
        "course", "lesson 08: SGD momentum 0.9, one-cycle lr up to 0.05, weight decay 5e-4, "
        "batch 64, 12 epochs, random flips, tensors decoded once", epochs,
        lambda: architectures.train_epoch(model, train_loader, bench.loss_fn, sgd, scheduler,
                                          bench.device, augment=True),
        lambda: bench.test_accuracy(model, test_loader), setup,
    )  # fmt: skip
    return notes, course


def names_gru(bench: Bench):
    names, device = lesson("11_name_classifier"), bench.device
    bench.args.names_format = "liuer"  # the notes' own files
    train_pairs, test_pairs, source = names.load_pairs(bench.args)
    if bench.quick:  # as lesson 11 --quick does
        train_pairs = random.Random(0).sample(train_pairs, min(QUICK_TRAIN, len(train_pairs)))
        test_pairs = random.Random(1).sample(test_pairs, min(QUICK_TEST, len(test_pairs)))
    languages = sorted({language for _, language in train_pairs})
    index = {language: i for i, language in enumerate(languages)}
    test_pairs = [pair for pair in test_pairs if pair[1] in index]
    print(f"  data: {source}, {len(train_pairs):,} training and {len(test_pairs):,} test names")
    collate = functools.partial(names.collate, language_index=index)
    train_loader = bench.loader(train_pairs, 256, True, collate_fn=collate)
    test_loader = bench.loader(test_pairs, 256, False, collate_fn=collate)

    def recipe(who, description, epochs, lr, schedule):
        model = bench.model(lambda: names.NameClassifier(len(languages)))
        adam = torch.optim.Adam(model.parameters(), lr=lr)
        scheduler = schedule(adam, epochs) if schedule else None

        def one_epoch():
            names.train_epoch(model, train_loader, adam, device)
            if scheduler is not None:
                scheduler.step()

        return train_and_score(who, description, epochs, one_epoch,
                               lambda: names.accuracy(model, test_loader, device))  # fmt: skip

    # The same batches of padded, sorted names for both; only the training recipe differs.
    notes = recipe("notes", "Adam lr 1e-3, batch 256, 100 epochs", bench.epochs(100), 1e-3, None)
    cosine = lambda optimizer, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)  # noqa: E731
    course = recipe("course", "lesson 11: Adam lr 3e-3 with cosine decay, batch 256, 10 epochs",
                    bench.epochs(10), 3e-3, cosine)  # fmt: skip
    return notes, course


@dataclass(frozen=True)
class Task:
    run: object  # Bench -> (notes Result, course Result)
    data: str
    lesson: str
    notes_scored_on: str  # where the notes measured their own accuracy


TASKS = {
    "fashion-mlp": Task(fashion_mlp, "FashionMNIST", "06_mlp", "test set"),
    "fashion-cnn": Task(fashion_cnn, "FashionMNIST", "07_cnn", "test set"),
    "mnist-cnn": Task(mnist_cnn, "MNIST", "07_cnn --dataset mnist", "training set"),
    "cifar10-net": Task(cifar10_net, "CIFAR-10", "08_cnn_architectures", "test set"),
    "names-gru": Task(names_gru, "the notes' names", "11_name_classifier", "test set"),
}


# --- the comparison: the table, the JSON, the plot ----------------------------------------------
def summarize(task: Task, notes: Result, course: Result) -> dict:
    """One task's numbers: the JSON's `tasks[name]` entry."""
    reached = seconds_to_reach(course.history, notes.accuracy)
    seconds_to_notes, epoch_to_notes = reached if reached else (None, None)
    return {
        "data": task.data,
        "notes": {"recipe": notes.recipe, "accuracy": notes.accuracy, "seconds": notes.seconds,
                  "scored_in_the_notes_on": task.notes_scored_on, "history": notes.history},
        "course": {"lesson": task.lesson, "recipe": course.recipe, "accuracy": course.accuracy,
                   "seconds": course.seconds, "seconds_to_notes_accuracy": seconds_to_notes,
                   "epoch_to_notes_accuracy": epoch_to_notes, "history": course.history},
        "ratio": None if reached is None else round(seconds_to_notes / notes.seconds, 3),
    }  # fmt: skip


def table(results: dict) -> str:
    """The comparison as aligned text: one row per task."""
    header = (f"{'task':<12} {'notes: accuracy':>15} {'time':>8}   {'course: accuracy':>16} "
              f"{'time':>8}   course reaches the notes' accuracy")  # fmt: skip
    lines, scored_on_train = [header, "-" * len(header)], False
    for name, result in results.items():
        notes, course = result["notes"], result["course"]
        star = "*" if notes["scored_in_the_notes_on"] == "training set" else " "
        scored_on_train |= star == "*"
        reached = "never"
        if result["ratio"] is not None:
            seconds, epoch = course["seconds_to_notes_accuracy"], course["epoch_to_notes_accuracy"]
            reached = f"after {seconds:.1f} s (epoch {epoch}) = {result['ratio']:.2f} x"
        lines.append(
            f"{name:<12} {notes['accuracy']:>14.4f}{star} {notes['seconds']:>7.1f}s   "
            f"{course['accuracy']:>16.4f} {course['seconds']:>7.1f}s   {reached}"
        )
    lines.append("'= r x': the course's time to the notes' final accuracy is r x the notes' time")
    if scored_on_train:
        lines.append("* the notes score this recipe on its training set; here both recipes are "
                     "scored on the test split")  # fmt: skip
    return "\n".join(lines)


def plot(results: dict, out: Path) -> None:
    """Test accuracy over the clock, one panel per task; a star on the course's first epoch at
    or above the notes' final accuracy (the dotted line)."""
    columns = min(len(results), 3)
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows),
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax, (name, result) in zip(axes.flat, results.items()):
        for who, style in (("notes", "o-"), ("course", "s-")):
            history = result[who]["history"]
            ax.plot([p["seconds"] for p in history], [p["accuracy"] for p in history], style,
                    markersize=3, label=f"{who}: {result[who]['accuracy']:.3f}")  # fmt: skip
        ax.axhline(result["notes"]["accuracy"], color="gray", linestyle=":", linewidth=1)
        if result["ratio"] is not None:
            course = result["course"]
            reached = course["history"][course["epoch_to_notes_accuracy"] - 1]
            ax.plot(reached["seconds"], reached["accuracy"], "*", color="black", markersize=11,
                    label=f"{result['ratio']:.2f} x the notes' time")  # fmt: skip
        ax.set(title=name, xlabel="seconds of training", ylabel="test accuracy")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    fig.suptitle("the notes' recipe vs the course's: test accuracy over training time")
    save_figure(fig, out / "accuracy_vs_time.png")


def cpu_name() -> str:
    """The CPU's model name where the system says it (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(args) -> dict:
    return {"device": describe(args.device), "platform": platform.platform(),
            "processor": cpu_name(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip


def write_json(path: Path, data: dict) -> None:
    try:
        with atomic_path(path) as temp_path:
            temp_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise LessonError(f"--json: cannot write {path}: {error.strerror or error}") from None
    print(f"wrote {path}")


def configure(parser) -> None:
    parser.add_argument("--task", action="append", choices=list(TASKS), metavar="NAME",
                        help=f"run this task only, repeatable: {', '.join(TASKS)}")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument("--image-folder", type=Path, metavar="DIR",
                        help="CIFAR-10 as DIR/train/<class>/*, DIR/test/<class>/* "
                             "(default: <data root>/CIFAR10-jpg when it is there)")  # fmt: skip


def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=str(Path("benchmarks", "notes_vs_course")),
                       configure=configure, prog="python benchmarks/notes_vs_course.py",
                       training_flags=False)  # fmt: skip
    if args.json is not None and not args.json.expanduser().resolve().parent.is_dir():
        raise LessonError(f"--json: the folder of {args.json} does not exist")  # before training
    bench, results, started = Bench(args), {}, time.perf_counter()
    if args.quick:
        print(
            f"quick: at most {QUICK_EPOCHS} epochs on {QUICK_TRAIN} training and {QUICK_TEST} test "
            "samples per recipe; it checks that all runs, the numbers mean nothing"
        )
    for name in args.task or list(TASKS):
        print(f"\n== {name} ({TASKS[name].data})")
        notes, course = TASKS[name].run(bench)
        results[name] = summarize(TASKS[name], notes, course)
    print("\n" + table(results))
    data = {"machine": machine(args), "quick": args.quick, "seed": args.seed, "tasks": results,
            "wall_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    print(f"{data['wall_seconds']:.0f} s in all; {data['machine']['device']}")
    plot(results, args.out)
    write_metrics(args.out, data)
    if args.json is not None:
        write_json(args.json.expanduser(), data)
    return data


if __name__ == "__main__":
    main()
