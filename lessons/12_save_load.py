"""Saving and loading: state_dicts, whole modules, checkpoints you can resume, unsafe pickles.

What you will learn
  - what a `state_dict` holds, and the safe way to save and load one:
    `model.load_state_dict(torch.load(path, weights_only=True))`, then `model.eval()`
  - saving a whole module with `torch.save(model, ...)`, why loading it needs `weights_only=False`,
    and why you should do that only for files you made yourself
  - a training checkpoint (epoch, model, optimizer, scheduler, random-number states, loss history)
    written atomically after every epoch, and `--resume`, which continues exactly where it stopped
  - a torchvision model (resnet18) round trip, with ImageNet weights when they can be downloaded
  - what `weights_only=True` protects you from: a file whose unpickling would run code

How to run
    python lessons/12_save_load.py --epochs 2             # train 2 epochs, checkpointing each
    python lessons/12_save_load.py --epochs 4 --resume    # continue from epoch 2 to epoch 4
    python lessons/12_save_load.py --quick                # a few batches, seconds
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).
A resumed run ends with exactly the weights of an uninterrupted one (same seed, same device).

Time: --quick ~5 s, full ~40 s (6 epochs) on a 2-core CPU.
"""

# %% Imports
from __future__ import annotations

import pickle
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from common import LessonError
from common.cli import lesson_args
from common.data import network_reachable, network_timeout, quick_subset, vision_dataset
from common.device import loader_options, synchronize, to_device
from common.report import atomic_path, save_figure, write_metrics

LESSON = Path(__file__).stem
LEARNING_RATE = 1e-3


# %% The model: a small FashionMNIST classifier (the MLP of lesson 06, with dropout)
class FashionMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, 256),
            nn.ReLU(),
            nn.Dropout(0.2),  # dropout draws random numbers: resuming must restore the RNG too
            nn.Linear(256, 10),
        )

    def forward(self, x):
        return self.layers(x)


def configure(parser) -> None:
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint if there is one"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint file (default OUT/checkpoint.pt)"
    )


# %% 1. What a state_dict is
def state_dict_tour(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    print("\n# 1. A state_dict maps names to tensors")
    for name, tensor in model.state_dict().items():
        print(f"  model  {name:<18} {list(tensor.shape)}")
    groups = optimizer.state_dict()["param_groups"]
    print(
        f"  optimizer: {len(groups)} param group, lr {groups[0]['lr']}, betas {groups[0]['betas']}"
    )
    print("  (the optimizer's per-parameter state, Adam's running averages, appears after a step)")


# %% 2. Training, with a checkpoint after every epoch
def train_epoch(model, loader, loss_fn, optimizer, device) -> float:
    model.train()  # dropout on
    total, count = 0.0, 0
    for images, labels in loader:
        images, labels = to_device((images, labels), device)
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / count


@torch.no_grad()
def evaluate(model, loader, loss_fn, device) -> tuple[float, float]:
    model.eval()  # dropout off: inference must be deterministic
    total_loss, correct, count = 0.0, 0, 0
    for images, labels in loader:
        images, labels = to_device((images, labels), device)
        logits = model(images)
        total_loss += loss_fn(logits, labels).item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        count += len(labels)
    return total_loss / count, correct / count


def rng_states(device: torch.device) -> dict:
    """Every generator the training touches, as plain tensors/ints (loadable with weights_only)."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),  # shuffling order, dropout masks, initialisation
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }
    if device.type == "cuda":  # GPUs have generators of their own (dropout on the GPU uses them)
        states["cuda"] = torch.cuda.get_rng_state_all()
    elif device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    # Write a temporary file, then rename it onto `path` in one step: a crash or Ctrl-C while
    # writing leaves the previous checkpoint untouched instead of half a file.
    with atomic_path(path) as temp_path:
        torch.save(checkpoint, temp_path)


CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "scheduler", "rng", "history", "config")


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint safely; a damaged file becomes a one-line error naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # garbage fails in many ways: zip, pickle, Index/KeyError, ...
        raise LessonError(
            f"{path} is not a readable checkpoint ({first_line(error)}); "
            "delete it or run without --resume"
        ) from None
    missing = [
        key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint
    ]
    if missing:
        raise LessonError(
            f"{path} is not a checkpoint of this lesson (missing {', '.join(missing)})"
        )
    return checkpoint


def resume_from(path, config, model, optimizer, scheduler) -> tuple[int, dict]:
    """Restore everything from the checkpoint at `path`; return (epochs done, history)."""
    checkpoint = load_checkpoint(path)
    if checkpoint["config"] != config:
        raise LessonError(
            f"{path} was made with {checkpoint['config']}, this run uses {config}: "
            "an exact resume needs the same settings"
        )
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])  # Adam's moments and step counts
        scheduler.load_state_dict(checkpoint["scheduler"])  # where the learning-rate decay is
    except (RuntimeError, ValueError, KeyError) as error:
        raise LessonError(f"{path} does not fit this model: {str(error).splitlines()[0]}") from None
    restore_rng_states(checkpoint["rng"])  # last: nothing may draw random numbers after it
    return checkpoint["epoch"], checkpoint["history"]


def train_with_checkpoints(args, model, optimizer, scheduler, train_loader, test_loader) -> dict:
    print("\n# 2. Training with a checkpoint after every epoch")
    path = args.checkpoint or args.out / "checkpoint.pt"
    config = {"batch_size": args.batch_size, "quick": args.quick, "lr": LEARNING_RATE}
    history = {"train_loss": [], "test_loss": [], "test_accuracy": [], "resumed_at": None}
    start = 0
    if args.resume and path.is_file():
        start, history = resume_from(path, config, model, optimizer, scheduler)
        history["resumed_at"] = start
        next_lr = scheduler.get_last_lr()[0]
        print(f"  resumed from {path}: {start} epoch(s) done, next lr {next_lr:.2e}")
    elif args.resume:
        print(f"  --resume: no checkpoint at {path} yet, starting from scratch")
    if start >= args.epochs:
        print(f"  the checkpoint has {start} epochs already (--epochs {args.epochs}): no training")

    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(start, args.epochs):
        synchronize(args.device)
        started = time.perf_counter()
        train_loss = train_epoch(model, train_loader, loss_fn, optimizer, args.device)
        test_loss, accuracy = evaluate(model, test_loader, loss_fn, args.device)
        scheduler.step()
        synchronize(args.device)
        seconds = time.perf_counter() - started
        history["train_loss"].append(train_loss)
        history["test_loss"].append(test_loss)
        history["test_accuracy"].append(accuracy)
        checkpoint = {
            "epoch": epoch + 1,  # epochs completed
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_states(args.device),
            "history": history,
            "config": config,
        }
        save_checkpoint(checkpoint, path)
        print(
            f"  epoch {epoch + 1}/{args.epochs}: train loss {train_loss:.4f} | test loss "
            f"{test_loss:.4f} | test accuracy {accuracy:.4f} | {seconds:.1f} s | saved {path.name}"
        )
    return history


# %% 3. Saving and loading the weights (the recommended way)
def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def state_dict_round_trip(args, model, test_loader) -> float:
    print("\n# 3. Save the state_dict, load it into a fresh model")
    path = args.out / "model_weights.pt"
    with atomic_path(path) as temp_path:
        torch.save(model.state_dict(), temp_path)  # only tensors: names -> weights
    fresh = FashionMLP().to(args.device)  # the code rebuilds the architecture...
    fresh.load_state_dict(torch.load(path, map_location=args.device, weights_only=True))
    fresh.eval()  # ...the file supplies the numbers; eval() before inference (dropout off)
    _, accuracy = evaluate(fresh, test_loader, nn.CrossEntropyLoss(), args.device)
    same = same_weights(model, fresh)
    print(f"  {path.name}: {path.stat().st_size / 1e3:.0f} kB, weights identical: {same}")
    print(f"  test accuracy of the reloaded model: {accuracy:.4f}")
    return accuracy


# %% 4. Saving the whole module (pickle) and why it needs trust
def whole_module_round_trip(model, folder: Path) -> dict:
    print("\n# 4. Save the whole module with pickle")
    path = folder / "whole_model.pt"
    torch.save(model, path)  # pickles the object: a reference to the class FashionMLP + weights
    try:
        torch.load(path, weights_only=True)
        refused = False
    except pickle.UnpicklingError as error:
        refused = True
        print(f"  weights_only=True refuses it: {first_line(error)}")
    # The file names the class by its module path; unpickling imports it and runs its code.
    # Fine for a file we wrote a line ago, dangerous for one from the internet.
    loaded = torch.load(path, weights_only=False)
    print(f"  weights_only=False (our own file only!) gives back a {type(loaded).__name__}")
    print("  unpickling runs whatever code the file names, so load such files only if you trust")
    print("  their source; and it breaks once the class is renamed or moved: prefer state_dicts")
    return {
        "whole_module_refused_by_weights_only": refused,
        "whole_module_reloaded": same_weights(model, loaded),
    }


def first_line(error: Exception) -> str:
    """The informative part of a (often long) error message, in one short line."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "Unsupported" in text:  # weights_only refusals: name the offending global
        text = text[text.index("Unsupported") :]
    for end in (" was not an allowed global", " Check the documentation", ". "):
        text = text.split(end)[0]
    return text[:120]


# %% 5. A torchvision model round trip
def pretrained_resnet18_state(args):
    """ImageNet weights for resnet18 (cached or downloaded), or None when they cannot be had."""
    from torchvision.models import ResNet18_Weights

    url = ResNet18_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True), "ImageNet (cached)"
    if args.offline:
        reason = "downloads are off"
    elif not network_reachable(url, timeout=5.0):
        reason = "the network is unreachable"
    else:
        try:
            with network_timeout(10.0):
                state = torch.hub.load_state_dict_from_url(
                    url, map_location="cpu", check_hash=True, weights_only=True
                )
            return state, "ImageNet (downloaded)"
        except (OSError, RuntimeError) as error:
            reason = f"the download failed ({first_line(error)})"
    print(f"NOTICE: resnet18 ImageNet weights unavailable ({reason}): using random weights")
    return None, "random"


def torchvision_round_trip(args, folder: Path) -> dict:
    print("\n# 5. A torchvision model: resnet18")
    from torchvision import models

    model = models.resnet18()  # the architecture, randomly initialised
    state, source = pretrained_resnet18_state(args)
    if state is not None:
        model.load_state_dict(state)
    path = folder / "resnet18.pt"
    torch.save(model.state_dict(), path)
    clone = models.resnet18()
    clone.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    clone.eval()  # batch norm uses its stored running statistics only in eval mode
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        same_output = torch.equal(model(x), clone(x))
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"  weights: {source} | parameters {parameters:,} | file {path.stat().st_size / 1e6:.1f} MB"
    )
    print(f"  reloaded model gives the same output: {same_output}")
    return {
        "resnet18_weights": source,
        "resnet18_parameters": parameters,
        "resnet18_same_output": same_output,
    }


# %% 6. What weights_only=True protects you from
class Payload:
    """A booby trap: pickle rebuilds an object by calling what __reduce__ returns."""

    def __reduce__(self):
        # A real attacker would return (os.system, ("...",)); ours only prints a line.
        return (print, ("  !!! this line was printed by code hidden inside the file !!!",))


def malicious_pickle(folder: Path) -> dict:
    print("\n# 6. A crafted file that runs code when unpickled")
    path = folder / "innocent_looking_weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": Payload()}, path)
    try:
        torch.load(path, weights_only=True)
        refused, reason = False, ""
    except pickle.UnpicklingError as error:
        refused, reason = True, first_line(error)
        print(f"  weights_only=True refuses it: {reason}")
    print("  the same file with weights_only=False runs the payload:")
    torch.load(path, weights_only=False)
    return {"malicious_pickle_refused": refused}


def corrupt_checkpoint_demo(path: Path, folder: Path) -> None:
    print("\n# 7. A damaged checkpoint is reported, not half-loaded")
    broken = folder / "truncated_checkpoint.pt"
    data = path.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # as if the disk filled up mid-write
    try:
        load_checkpoint(broken)
    except LessonError as error:
        print(f"  error: {error}")
    print("  (that is why checkpoints are written to a temporary file and renamed into place)")


def plot_history(history: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = range(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], "o-", label="train loss")
    ax.plot(epochs, history["test_loss"], "s-", label="test loss")
    if history["resumed_at"]:
        ax.axvline(history["resumed_at"] + 0.5, color="gray", ls="--", label="resumed here")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.set_title("FashionMNIST MLP, checkpointed every epoch")
    save_figure(fig, path)


# %% main
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON, configure=configure, epochs=6, batch_size=64)
    from torchvision.transforms import v2

    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    train_set = quick_subset(
        vision_dataset("FashionMNIST", args, train=True, transform=to_tensor), 512, args.quick
    )
    test_set = quick_subset(
        vision_dataset("FashionMNIST", args, train=False, transform=to_tensor), 256, args.quick
    )
    options = loader_options(args.device)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, **options)
    test_loader = DataLoader(test_set, batch_size=256, **options)

    model = FashionMLP().to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    state_dict_tour(model, optimizer)
    history = train_with_checkpoints(args, model, optimizer, scheduler, train_loader, test_loader)
    accuracy = state_dict_round_trip(args, model, test_loader)
    metrics = {"test_accuracy": accuracy, "epochs": len(history["train_loss"])}
    with tempfile.TemporaryDirectory() as folder:
        metrics |= whole_module_round_trip(model, Path(folder))
        metrics |= torchvision_round_trip(args, Path(folder))
        metrics |= malicious_pickle(Path(folder))
        corrupt_checkpoint_demo(args.checkpoint or args.out / "checkpoint.pt", Path(folder))
    plot_history(history, args.out / "loss.png")

    metrics |= {
        "train_loss_history": history["train_loss"],
        "test_loss": history["test_loss"],
        "test_accuracy_per_epoch": history["test_accuracy"],
        "resumed_at_epoch": history["resumed_at"],
    }
    print(f"\nTest accuracy after {metrics['epochs']} epochs: {accuracy:.4f}")
    write_metrics(args.out, metrics, headline="test_accuracy")
    return metrics


if __name__ == "__main__":
    main()
