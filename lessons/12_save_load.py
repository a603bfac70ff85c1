"""Saving and loading: state_dicts, whole modules, unsafe pickles, checkpoints you can resume.

What you will learn
  - what a `state_dict` is; `torch.save(model.state_dict(), path)`,
    `model.load_state_dict(torch.load(path, weights_only=True))`, `model.eval()`; the same for
    a torchvision model (resnet18, ImageNet weights when they can be downloaded)
  - saving a whole module (a pickle), loading it with `weights_only=False`, and a crafted file
    whose hidden code `weights_only=True` refuses to run
  - a checkpoint written atomically every epoch; `--resume` continues exactly where it stopped
How to run
    python lessons/12_save_load.py --epochs 2            # train 2 epochs, checkpointing each
    python lessons/12_save_load.py --epochs 6 --resume   # continue from epoch 2 to epoch 6
    python lessons/12_save_load.py --quick               # a few batches, seconds

Time: --quick ~6 s, full ~1 min (6 epochs) on a 2-core CPU (test accuracy about 0.88).
"""

# %%
import os
import pickle
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import models
from torchvision.transforms import ToTensor

from common import LessonError
from common.cli import lesson_args
from common.data import available_weights, vision_dataset
from common.report import progress, save_figure, write_metrics

LEARNING_RATE = 1e-3


def configure(parser) -> None:
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")


def short(error: Exception) -> str:
    """torch's errors run to paragraphs: the part that says what went wrong, in one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "Unsupported" in text:  # a weights_only refusal names what it would have had to call
        text = text[text.index("Unsupported") :]
    return text.split(" was not an allowed")[0].split(" Check the")[0].split(". ")[0][:120]


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="12_save_load", configure=configure, epochs=6, batch_size=64,
                       threads=1)  # a small MLP trains fastest on one thread  # fmt: skip
    device = args.device

# %% [markdown]
# ## 1. What a state_dict is
# A model's learned numbers are its parameters (and buffers, such as batch norm's running
# statistics); `model.state_dict()` maps their names to their tensors, without the model's code.
# This MLP holds $784 \cdot 256 + 256 + 256 \cdot 10 + 10 = 203{,}530$ numbers. An optimizer has
# a state_dict too: its settings (`param_groups`) and, once it has stepped, its state per
# parameter (for Adam, running averages of the gradient and its square).


# %%
class FashionMLP(nn.Module):
    """The MLP of lesson 06 with dropout: 784 -> 256 -> 10."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10)
        )

    def forward(self, x):
        return self.layers(x)


if __name__ == "__main__":
    model = FashionMLP().to(device)
    for name, tensor in model.state_dict().items():
        print(f"model.state_dict()['{name}']: {list(tensor.shape)}")
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model(torch.rand(8, 1, 28, 28, device=device)).sum().backward()
    optimizer.step()  # one step, so that Adam has state to show
    group, state = optimizer.state_dict()["param_groups"][0], optimizer.state_dict()["state"]
    print(f"optimizer param_groups: lr {group['lr']}, betas {group['betas']}, "
          f"params {group['params']}; state of parameter 0: {sorted(state[0])}")  # fmt: skip

# %% [markdown]
# ## 2. Save the weights, load them into a fresh model
# The recommended way: save the state_dict; to load, build the model from its code and copy the
# numbers in. `weights_only=True` (the default since torch 2.6) unpickles only tensors and plain
# containers. Then `model.eval()`: dropout and batch norm behave differently while training (two
# passes over the same images differ), and predictions need the evaluation behaviour. A
# torchvision model (`weights=` fills it with ImageNet weights, downloaded once into torch's
# cache) makes the same round trip; in eval mode its batch norm uses the stored running statistics.


# %%
def round_trip(model: nn.Module, path: Path, images: torch.Tensor) -> dict:
    """The predictions of `model` on `images`, and of a fresh model loaded from its state_dict."""
    model.eval()
    torch.save(model.state_dict(), path)
    reloaded = FashionMLP().to(images.device)
    # The notes call weights_only=False the default: it was, before torch 2.6.
    reloaded.load_state_dict(torch.load(path, weights_only=True))
    reloaded.eval()
    with torch.no_grad():
        before, after = model(images), reloaded(images)
        training_mode = model.train()(images)  # dropout on: it zeroes a random fifth of the units
    return {"before": before.argmax(1).tolist(), "after": after.argmax(1).tolist(),
            "identical": torch.equal(before, after),
            "train_mode_differs": not torch.equal(before, training_mode)}  # fmt: skip


def resnet18(offline: bool) -> tuple[nn.Module, str]:
    """resnet18 with ImageNet weights when cached or downloadable, else random (announced)."""
    weights = available_weights(
        models.ResNet18_Weights.IMAGENET1K_V1, offline=offline, name="resnet18"
    )
    return models.resnet18(weights=weights), "random" if weights is None else "ImageNet"


if __name__ == "__main__":
    test_set = vision_dataset("FashionMNIST", args, train=False, transform=ToTensor())
    images = torch.stack([test_set[i][0] for i in range(8)]).to(device)
    trip = round_trip(model, args.out / "model_weights.pt", images)
    print(f"predicted classes before saving:  {trip['before']}")
    print(f"after loading into a fresh model: {trip['after']}")
    print(f"identical outputs: {trip['identical']}; in train mode the same images give "
          f"other outputs: {trip['train_mode_differs']}; model_weights.pt: "
          f"{(args.out / 'model_weights.pt').stat().st_size / 1e3:.0f} kB")  # fmt: skip
    resnet, resnet_weights = resnet18(args.offline)
    torch.save(resnet.state_dict(), args.out / "resnet18.pt")
    clone = models.resnet18()
    clone.load_state_dict(torch.load(args.out / "resnet18.pt", weights_only=True))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        resnet_same = torch.equal(resnet.eval()(x), clone.eval()(x))
    resnet_parameters = sum(p.numel() for p in resnet.parameters())
    print(f"resnet18 ({resnet_weights} weights): {resnet_parameters:,} parameters, "
          f"{(args.out / 'resnet18.pt').stat().st_size / 1e6:.1f} MB; "
          f"the reloaded copy gives the same output: {resnet_same}")  # fmt: skip

# %% [markdown]
# ## 3. Saving the whole module, and what `weights_only` protects you from
# `torch.save(model, path)` pickles the object: not the class's code but its name
# (`__main__.FashionMLP`), which loading imports and calls. The file breaks once the class is
# renamed or moved, and `weights_only=True` refuses it; `weights_only=False` runs whatever the
# file names, so use it only for files you made or fully trust. Pickle rebuilds an object by
# calling what its `__reduce__` returns: the crafted file below looks like a state_dict, but it
# calls `print` when unpickled (an attacker's would call `os.system`).


# %%
class Payload:
    """A booby trap: unpickling it calls print (a real one would call os.system)."""

    def __reduce__(self):
        return (print, ("!!! this line was printed by code hidden inside the file !!!",))


def weights_only_answer(path: Path) -> str:
    """What `torch.load(path, weights_only=True)` says: 'loaded' or its one-line refusal."""
    try:
        torch.load(path, weights_only=True)
        return "loaded"
    except pickle.UnpicklingError as error:
        return f"refused ({short(error)})"


if __name__ == "__main__":
    torch.save(model, args.out / "whole_model.pt")
    whole_module_answer = weights_only_answer(args.out / "whole_model.pt")
    print(f"whole module, weights_only=True: {whole_module_answer}")
    whole = torch.load(args.out / "whole_model.pt", weights_only=False)  # we wrote it: trusted
    whole_same = all(map(torch.equal, whole.state_dict().values(), model.state_dict().values()))
    print(f"whole module, weights_only=False: a {type(whole).__name__}, same weights: {whole_same}")
    trap = args.out / "innocent_looking_weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": Payload()}, trap)
    trap_answer = weights_only_answer(trap)
    print(f"crafted file, weights_only=True: {trap_answer}")
    print("crafted file, weights_only=False runs its payload:")
    torch.load(trap, weights_only=False)
    trap.unlink()

# %% [markdown]
# ## 4. A training checkpoint, written after every epoch
# To continue an interrupted run the weights are not enough: the checkpoint also holds the epoch
# count, the optimizer's state (Adam's running averages), the scheduler's place in its decay, the
# loss history and the state of the random-number generators, which decide the shuffling order
# and the dropout masks. All of it is tensors, numbers and plain containers: `weights_only=True`.
#
# It is written in two lines: `torch.save(checkpoint, tmp)` writes a temporary file, then
# `os.replace(tmp, path)` renames it over the old checkpoint in one atomic step. A run that dies
# while writing (Ctrl-C, a full disk, a power cut) damages only the temporary file: the last good
# checkpoint is never destroyed. `--resume` loads it and carries on (with the same settings).
# The data: FashionMNIST as lesson 03 loads it (`ToTensor`: 1×28×28 floats in $[0, 1]$); `--quick`
# keeps the first 512 training and 256 test images.


# %%
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


def load_checkpoint(path: Path, settings: dict | None = None) -> dict:
    """The checkpoint at `path`; a missing, damaged or foreign file is a one-line LessonError."""
    if not path.is_file():  # the notes' --resume starts afresh then; a mistyped --out should not
        raise LessonError(f"--resume: there is no checkpoint at {path}; run without --resume")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # damage fails in many ways: zip, pickle, EOF, IndexError...
        raise LessonError(f"{path} is not a readable checkpoint ({short(error)}); "
                          "delete it or run without --resume") from None  # fmt: skip
    if not isinstance(checkpoint, dict) or not checkpoint.keys() >= {"model", "settings"}:
        raise LessonError(f"{path} is not a checkpoint of this lesson")
    if settings is not None and checkpoint["settings"] != settings:
        raise LessonError(f"{path} was made with {checkpoint['settings']}, this run uses "
                          f"{settings}: an exact resume needs the same settings")  # fmt: skip
    return checkpoint


def train(model, train_loader, test_loader, epochs: int, path: Path, resume=False) -> dict:
    """Train to `epochs` epochs, checkpointing each to `path`; `resume` starts from `path`."""
    device = next(model.parameters()).device
    accelerator = torch.get_device_module(device) if device.type != "cpu" else None
    settings = {"lr": LEARNING_RATE, "batch_size": train_loader.batch_size,
                "train_images": len(train_loader.dataset), "device": device.type}  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    history = {"train_loss": [], "test_loss": [], "test_accuracy": [], "resumed_at": None}
    if resume:
        checkpoint = load_checkpoint(path, settings)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["rng"][0])  # last: nothing may draw random numbers after
        if accelerator:  # dropout on a GPU draws from the GPU's own generator
            accelerator.set_rng_state(checkpoint["rng"][1], device)
        history = checkpoint["history"] | {"resumed_at": checkpoint["epoch"]}
        print(f"resumed from {path}: {checkpoint['epoch']} of {epochs} epochs done")
    for epoch in range(len(history["train_loss"]) + 1, epochs + 1):
        model.train()
        total = 0.0
        for images, labels in progress(train_loader, desc=f"epoch {epoch}"):
            images, labels = images.to(device), labels.to(device)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        train_loss = total / len(train_loader)
        test_loss, accuracy = evaluate(model, test_loader, loss_fn, device)
        scheduler.step()
        for key, value in zip(history, (train_loss, test_loss, accuracy)):
            history[key].append(value)
        rng = [torch.get_rng_state()] + ([accelerator.get_rng_state(device)] if accelerator else [])
        checkpoint = {"epoch": epoch, "model": model.state_dict(), "rng": rng,
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "history": history, "settings": settings}  # fmt: skip
        tmp = path.with_name(path.name + ".tmp")
        torch.save(checkpoint, tmp)  # an interruption here leaves `path` as it was...
        os.replace(tmp, path)  # ...and this swaps the complete new file in, in one step
        print(f"epoch {epoch}: train loss {train_loss:.4f} | test loss {test_loss:.4f} | "
              f"test accuracy {accuracy:.4f} | saved {path.name}")  # fmt: skip
    return history


if __name__ == "__main__":
    train_set = vision_dataset("FashionMNIST", args, train=True, transform=ToTensor())
    if args.quick:
        train_set, test_set = Subset(train_set, range(512)), Subset(test_set, range(256))
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    print(f"FashionMNIST: {len(train_set):,} training and {len(test_set):,} test images")
    torch.manual_seed(args.seed)  # the same start, whatever the cells above drew
    model = FashionMLP().to(device)
    checkpoint_path = args.out / "checkpoint.pt"
    history = train(model, train_loader, test_loader, args.epochs, checkpoint_path, args.resume)
    print(f"checkpoint.pt: {checkpoint_path.stat().st_size / 1e6:.1f} MB (weights + Adam's state)")

# %% [markdown]
# ## 5. A resumed run ends exactly where an uninterrupted one does
# The proof, on a slice of the training set: from the same seed, train two epochs straight; then
# train one epoch, throw the model away, build a new one (which draws fresh random numbers) and
# resume it from the checkpoint for the second epoch. Every weight comes out bit for bit the same;
# without the saved random-number state the second epoch would shuffle and drop out differently.


# %%
def resume_difference(train_loader, test_loader, folder: Path, seed: int, device) -> float:
    """The largest weight difference between a 2-epoch run and a 1-epoch run resumed to 2."""
    print("uninterrupted, 2 epochs:")
    torch.manual_seed(seed)
    straight = FashionMLP().to(device)
    train(straight, train_loader, test_loader, 2, folder / "proof_straight.pt")
    print("interrupted after 1 epoch, then restarted with --resume:")
    torch.manual_seed(seed)
    train(FashionMLP().to(device), train_loader, test_loader, 1, folder / "proof_resumed.pt")
    resumed = FashionMLP().to(device)  # a new process would build a new model
    train(resumed, train_loader, test_loader, 2, folder / "proof_resumed.pt", resume=True)
    pairs = zip(straight.state_dict().values(), resumed.state_dict().values())
    return max((a - b).abs().max().item() for a, b in pairs)


if __name__ == "__main__":
    part = Subset(train_set, range(min(2048, len(train_set))))
    part_loader = DataLoader(part, batch_size=args.batch_size, shuffle=True)
    part_test = DataLoader(Subset(test_set, range(min(1000, len(test_set)))), batch_size=1000)
    difference = resume_difference(part_loader, part_test, args.out, args.seed, device)
    print(f"largest weight difference, resumed vs uninterrupted: {difference}")

# %% [markdown]
# ## 6. Results
# The loss curves (a dashed line marks where a `--resume` run picked up); the trained weights are
# saved as a state_dict, the file to keep for inference.

# %%
if __name__ == "__main__":
    epochs = range(1, len(history["train_loss"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, history["train_loss"], "o-", epochs, history["test_loss"], "s-")
    if history["resumed_at"]:
        ax.axvline(history["resumed_at"] + 0.5, color="gray", ls="--")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="train (o) and test (s) loss")
    save_figure(fig, args.out / "loss.png")
    torch.save(model.state_dict(), args.out / "model_weights.pt")  # the trained weights, to keep
    accuracy = history["test_accuracy"][-1]
    print(f"test accuracy after {len(epochs)} epochs: {accuracy:.4f}; weights in model_weights.pt")
    metrics = {
        "test_accuracy": accuracy, "epochs": len(epochs), "resumed_at_epoch": history["resumed_at"],
        "train_loss_history": history["train_loss"], "test_accuracies": history["test_accuracy"],
        "resume_max_difference": difference, "round_trip_identical": trip["identical"],
        "resnet18_weights": resnet_weights, "resnet18_parameters": resnet_parameters,
        "resnet18_same_output": resnet_same, "whole_module_weights_only": whole_module_answer,
        "crafted_file_weights_only": trap_answer,
    }  # fmt: skip
    write_metrics(args.out, metrics, headline="test_accuracy")
