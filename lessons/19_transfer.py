"""Transfer and self-supervised learning: reuse a pretrained CNN when the labels are few.

What you will learn: augmentation with `torchvision.transforms.v2`; a CNN pretrained on digits
0-4 (all labels) reused on digits 5-9 (5 labels each) from scratch, frozen (`requires_grad_(False)`)
under a new `AdaptiveAvgPool2d` + `Linear` head, and fine-tuned with a smaller body learning
rate; self-supervised pre-training (predict how far an unlabelled image was turned) judged by a
linear probe against a randomly initialised network; `resnet18(weights=ResNet18_Weights.DEFAULT)`
with `weights.transforms()` (ImageNet mean/std), a frozen body and a new `fc`.
Run: python lessons/19_transfer.py [--quick] [--labels-per-class 50 --draws 1]. Data: MNIST from
the data root (offline: a stand-in); resnet18's ImageNet weights when they can be had.

Time: --quick ~6 s, full ~2.5 min on a 2-core CPU.
"""

# %%
import copy

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import models
from torchvision.transforms import v2
from torchvision.utils import make_grid

from common import LessonError
from common.cli import lesson_args, positive_int
from common.data import available_weights, vision_dataset
from common.report import progress, save_figure, write_metrics

SOURCE_DIGITS, TARGET_DIGITS = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
LEARNING_RATE = 3e-3  # Adam, for every new parameter; a pretrained body gets a third of it
WAYS = ["scratch", "frozen", "fine-tune"]
FEW_EPOCHS = 300  # passes over the few labelled images (one batch)


def configure(parser) -> None:
    add = parser.add_argument
    add("--labels-per-class", type=positive_int, default=5, help="the few labels (default 5)")
    add("--draws", type=positive_int, default=5, help="draws of the few labels (default 5)")


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    # threads=1: these CNNs are small; more threads only add overhead, most of all on a busy CPU.
    args = lesson_args(__doc__, name="19_transfer", configure=configure, epochs=1,
                       batch_size=128, threads=1)  # fmt: skip
    device = args.device
    few_epochs, draws = (10, 1) if args.quick else (FEW_EPOCHS, args.draws)
    if args.batch_size < 8:  # BatchNorm needs several images per batch
        raise LessonError(f"--batch-size {args.batch_size}: use at least 8")

# %% [markdown]
# ## 1. A task with few labels, and two kinds of help
# The task: tell the digits **5–9** apart from **5 labelled images each** (25 in all; which 25
# matters, so each score is a mean over draws), scored on every 5–9 of MNIST's test split. Help:
# a **source task** with many labels, digits 0–4 (~30,600): a network trained on it has learnt
# strokes, loops and corners, as an ImageNet network has learnt edges and textures; and
# **unlabelled images**, all 60,000 training images with their labels ignored. A whole split is
# kept as one tensor (the 60,000 are 188 MB as floats), so an epoch only slices it.


# %%
def load_split(args, train: bool, limit=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole MNIST split as (N x 1 x 28 x 28 floats in [0, 1], labels): its first `limit`."""
    dataset = vision_dataset("MNIST", args, train=train)
    return dataset.data[:limit].unsqueeze(1).float() / 255, torch.as_tensor(dataset.targets[:limit])


def keep_classes(images, labels, classes: list[int]):
    """The images of `classes` (sorted), relabelled 0, 1, ...: digits 5-9 become classes 0-4."""
    keep = torch.isin(labels, torch.tensor(classes))
    return images[keep], torch.searchsorted(torch.tensor(classes), labels[keep])


def few_labels(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` images of each class, drawn at random."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return torch.cat([order[labels[order] == c][:per_class] for c in range(int(labels.max()) + 1)])


if __name__ == "__main__":
    pixels, digits = load_split(args, train=True, limit=1024 if args.quick else None)
    test_pixels, test_digits = load_split(args, train=False, limit=256 if args.quick else None)
    mean, std = pixels.mean().item(), pixels.std().item()  # the same standardization for all
    unlabelled, test_images = (pixels - mean) / std, (test_pixels - mean) / std
    source_x, source_y = keep_classes(unlabelled, digits, SOURCE_DIGITS)
    source_test = keep_classes(test_images, test_digits, SOURCE_DIGITS)
    target_x, target_y = keep_classes(unlabelled, digits, TARGET_DIGITS)
    target_test = keep_classes(test_images, test_digits, TARGET_DIGITS)
    per_class = args.labels_per_class
    draws_chosen = [few_labels(target_y, per_class, args.seed + d) for d in range(draws)]
    if len(draws_chosen[0]) < per_class * len(TARGET_DIGITS):
        raise LessonError(f"--labels-per-class {per_class}: some digit has fewer training images")
    print(f"source task, digits 0-4: {len(source_x):,} labelled images | target task, digits 5-9: "
          f"{draws} draw(s) of {per_class} labels per class, {len(target_test[1]):,} test images | "
          f"{len(unlabelled):,} unlabelled images | mean {mean:.4f}, std {std:.4f}")  # fmt: skip

# %% [markdown]
# ## 2. Data augmentation with `transforms.v2`
# With few labels every image counts. Augmentation makes new training images out of old ones by
# changes that keep the label: a random crop of 60–100 % of the image, resized back to 28×28;
# brighter or fainter ink. Not every change keeps it: a flipped shoe is still a shoe, a flipped
# 2 is no digit, and a 6 turned upside down is a 9 (section 5 turns that into a free label).
# A `v2` transform draws its random parameters once per call: one call on a batch would give all
# its images the same crop, so call it per image, as a `Dataset`'s `__getitem__` does.


# %%
def augmentations() -> dict[str, v2.Transform]:
    """Label-keeping changes of a digit, and one (the flip) that breaks the label."""
    crop = v2.RandomResizedCrop(28, scale=(0.6, 1.0), antialias=True)
    jitter = v2.ColorJitter(brightness=0.6, contrast=0.6)
    return {"crop": crop, "colour jitter": jitter, "crop + jitter": v2.Compose([crop, jitter]),
            "flip (not a digit!)": v2.RandomHorizontalFlip(p=1.0)}  # fmt: skip


def augment_each(transform, images: torch.Tensor) -> torch.Tensor:
    """`transform` applied to each image on its own, so each gets fresh random parameters."""
    return torch.stack([transform(image) for image in images])


if __name__ == "__main__":
    originals = (pixels[:8] * 255).round().to(torch.uint8)  # v2 takes uint8 images as they are
    rows = {"original": originals}
    rows.update({name: augment_each(t, originals) for name, t in augmentations().items()})
    grid = make_grid(torch.cat(list(rows.values())), nrow=8, pad_value=128)  # 3 x H x W
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.imshow(grid.permute(1, 2, 0).numpy())  # matplotlib wants H x W x 3
    ax.set(xticks=[], yticks=[15 + 30 * row for row in range(len(rows))], yticklabels=list(rows))
    save_figure(fig, args.out / "augmentations.png")

# %% [markdown]
# ## 3. A body, a head, and pretraining on the source task
# The CNN is a **body**, three blocks of 3×3 convolution, BatchNorm, ReLU and 2×2 max pooling
# (28 → 14 → 7 → 3 pixels, 32 feature maps), under a **head** for one task. The head averages
# each map to one number (`AdaptiveAvgPool2d(1)`: 32 numbers whatever the image size), puts the
# 32 on one scale (`BatchNorm1d` with no learnt scale: fair to any body) and classifies them with
# `Linear`. Transfer keeps a body and gives it a new head.
#
# Pretraining is the training loop of lesson 06, with one addition for later: a **frozen** body
# stays in eval mode. `requires_grad_(False)` stops its weights, but BatchNorm's running mean and
# variance are buffers, not parameters: in train mode every batch would still move them.


# %%
def conv_block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1),
                         nn.BatchNorm2d(channels_out), nn.ReLU(), nn.MaxPool2d(2))  # fmt: skip


def new_head(channels: int, classes: int) -> nn.Sequential:
    pool, standardize = nn.AdaptiveAvgPool2d(1), nn.BatchNorm1d(channels, affine=False)
    return nn.Sequential(pool, nn.Flatten(), standardize, nn.Linear(channels, classes))


class SmallCNN(nn.Module):
    def __init__(self, classes: int, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(conv_block(1, width), conv_block(width, 2 * width),
                                  conv_block(2 * width, 4 * width))  # fmt: skip
        self.head = new_head(4 * width, classes)

    def forward(self, x):
        return self.head(self.body(x))


def trainable(model: nn.Module) -> int:  # how many parameters an optimizer may change
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(model, loader, optimizer, epochs: int, device, desc="training", frozen_body=False):
    """Train for `epochs` passes over `loader`; returns the loss of every batch."""
    loss_fn, losses = nn.CrossEntropyLoss(), []
    model.train()
    if frozen_body:
        model.body.eval()
    batches = ((X, y) for _ in range(epochs) for X, y in loader)
    for X, y in progress(batches, desc=desc, total=epochs * len(loader)):
        X, y = X.to(device), y.to(device)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def accuracy(model, images, labels, device) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(X.to(device)).argmax(1).cpu() for X in images.split(1000)])
    return (predicted == labels).float().mean().item()


def smoothed(losses: list[float], points: int = 10) -> list[float]:
    return [chunk.mean().item() for chunk in torch.tensor(losses).chunk(points)]


if __name__ == "__main__":
    model = SmallCNN(len(SOURCE_DIGITS)).to(device)
    print(f"body: {trainable(model.body):,} parameters, images {list(unlabelled[:2].shape)} -> "
          f"features {list(model.body(unlabelled[:2].to(device)).shape)}; head: "
          f"{trainable(model.head)} parameters")  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loader = DataLoader(TensorDataset(source_x, source_y), args.batch_size, True, drop_last=True)
    source_losses = smoothed(train(model, loader, optimizer, args.epochs, device, desc="source"))
    source_accuracy = accuracy(model, *source_test, device)
    print(f"pretrained on digits 0-4 for {args.epochs} epoch(s): loss {source_losses[0]:.3f} -> "
          f"{source_losses[-1]:.3f}, test accuracy {source_accuracy:.4f}")  # fmt: skip
    pretrained_body = model.body

# %% [markdown]
# ## 4. Three ways to use it on the few labels
# **From scratch**: a new network, every weight learnt from the 25 images. **Frozen**: the
# pretrained body, frozen, under a new head, so only the head's 165 weights learn (the notes:
# freezing the feature layers makes fine-tuning cheap). **Fine-tuning**: body and new head both
# learn, the body at a third of the head's learning rate (two parameter groups), so the new
# head's first clumsy gradients do not wreck what the body knows. The fewer the labels, the more
# the head start is worth: with `--labels-per-class 100` training from scratch nearly catches up.


# %%
def transfer_model(way: str, body: nn.Module, classes: int):
    """(model, optimizer) for 'scratch', 'frozen' or 'fine-tune' with a pretrained `body`."""
    model = SmallCNN(classes)
    if way == "scratch":
        return model, torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.body = copy.deepcopy(body)
    if way == "frozen":
        model.body.requires_grad_(False)
        return model, torch.optim.Adam(model.head.parameters(), lr=LEARNING_RATE)
    groups = [{"params": model.body.parameters(), "lr": LEARNING_RATE / 3},
              {"params": model.head.parameters()}]  # fmt: skip
    return model, torch.optim.Adam(groups, lr=LEARNING_RATE)


def few_label_run(way, body, few, test, epochs, device) -> tuple[float, nn.Module]:
    """Train `way` on the `few` (images, labels): (accuracy on `test`, the trained model)."""
    model, optimizer = transfer_model(way, body, len(TARGET_DIGITS))
    loader = DataLoader(TensorDataset(*few), batch_size=len(few[1]), shuffle=True)  # one batch
    train(model.to(device), loader, optimizer, epochs, device, way, frozen_body=way == "frozen")
    return accuracy(model, *test, device), model


def same_state(a: nn.Module, b: nn.Module) -> bool:  # weights and BatchNorm statistics alike?
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


if __name__ == "__main__":
    results, trained = {way: [] for way in WAYS}, {}
    for draw, chosen in enumerate(draws_chosen, start=1):
        few = target_x[chosen], target_y[chosen]
        for way in WAYS:
            score, trained[way] = few_label_run(way, pretrained_body, few, target_test, few_epochs,
                                                device)  # fmt: skip
            results[way].append(score)
        print(f"draw {draw}: " + ", ".join(f"{way} {results[way][-1]:.4f}" for way in WAYS))
    kept = {way: same_state(trained[way].body, pretrained_body) for way in WAYS[1:]}
    print(f"trainable parameters: { {way: trainable(trained[way]) for way in WAYS} }; the body "
          f"is still as pretrained: {kept}")  # fmt: skip

# %% [markdown]
# ## 5. Self-supervised pre-training: how far was it turned?
# The notes' §1.1: pretrain on a **pretext task** whose labels come from the data itself, then
# solve the **downstream task**. Here: turn each unlabelled image by $k$ quarter turns
# ($k \in \{0,1,2,3\}$, `torch.rot90`; every batch holds its images in all four orientations)
# and predict $k$. To do that a network must know which way up a 2 or a 7 is: what digits look
# like. (The notes' example, two augmented views of one image, is contrastive learning; rotation
# is cheaper.) The pretext head has an extra conv layer, thrown away with what only rotation
# needs. A **linear probe** trains a new head on the frozen body; the same probe on a randomly
# initialised body shows what the pretext taught.


# %%
def all_rotations(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """`collate_fn` of the pretext task: each image turned by k = 0-3 quarter turns, label k."""
    images = torch.stack([image for (image,) in batch])
    turned = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
    return turned, torch.arange(4).repeat_interleave(len(images))


def pretext_model(width: int = 8) -> SmallCNN:
    model, channels = SmallCNN(4, width), 4 * width
    model.head = nn.Sequential(*conv_block(channels, 2 * channels)[:3], *new_head(2 * channels, 4))
    return model


if __name__ == "__main__":
    rotator = pretext_model().to(device)
    optimizer = torch.optim.Adam(rotator.parameters(), lr=LEARNING_RATE)
    pretext_images = unlabelled[:512] if args.quick else unlabelled
    loader = DataLoader(TensorDataset(pretext_images), args.batch_size // 4, shuffle=True,
                        drop_last=True, collate_fn=all_rotations)  # fmt: skip
    pretext_losses = smoothed(train(rotator, loader, optimizer, args.epochs, device, "pretext"))
    turned, turns = all_rotations([(image,) for image in test_images[:1000]])
    pretext_accuracy = accuracy(rotator, turned, turns, device)
    print(f"pretext on {len(pretext_images):,} unlabelled images: loss {pretext_losses[0]:.3f} -> "
          f"{pretext_losses[-1]:.3f}; turns of {len(turned):,} test images told apart with "
          f"accuracy {pretext_accuracy:.4f}")  # fmt: skip
    for name, body in (("rotation probe", rotator.body), ("random probe", SmallCNN(4).body)):
        results[name] = [few_label_run("frozen", body, (target_x[c], target_y[c]), target_test,
                                       few_epochs, device)[0] for c in draws_chosen]  # fmt: skip
        print(f"{name}: " + ", ".join(f"{score:.4f}" for score in results[name]))

# %% [markdown]
# ## 6. The torchvision way: ImageNet weights
# `resnet18(weights=ResNet18_Weights.DEFAULT)` downloads weights learnt on 1.2 million ImageNet
# photos, which come with their preprocessing, `weights.transforms()`: resize the short side to
# 256, crop the centre 224×224, scale to [0, 1], subtract ImageNet's per-channel mean and divide
# by its std, the inputs the weights were trained on (the notes resize straight to 224×224,
# squashing photos that are not square). Then section 4's recipe: freeze everything, replace `fc`
# (512 → 1000 classes) by a new `Linear` (512 → 5), train only that. Grey digits: 3 equal channels.


# %%
def resnet18(offline: bool) -> tuple[nn.Module, str]:
    """resnet18 with ImageNet weights when cached or downloadable, else random (announced)."""
    weights = available_weights(models.ResNet18_Weights.DEFAULT, offline=offline, name="resnet18")
    return models.resnet18(weights=weights), "random" if weights is None else "ImageNet"


if __name__ == "__main__":
    preprocess = models.ResNet18_Weights.DEFAULT.transforms()
    black = [round((0 - m) / s, 2) for m, s in zip(preprocess.mean, preprocess.std)]
    print(f"{preprocess}\nmean {preprocess.mean}, std {preprocess.std}: black becomes {black}")
    resnet, resnet_weights = resnet18(args.offline)
    resnet.requires_grad_(False)  # freeze every weight, then put a new (trainable) last layer on
    resnet.fc = nn.Linear(resnet.fc.in_features, len(TARGET_DIGITS))
    resnet = resnet.to(device).eval()  # eval: BatchNorm keeps ImageNet's statistics
    chosen = draws_chosen[0][: 2 if args.quick else 8]
    batch = preprocess((target_x[chosen] * std + mean).repeat(1, 3, 1, 1)).to(device)
    logits = resnet(batch)
    nn.functional.cross_entropy(logits, target_y[chosen].to(device)).backward()
    total = sum(p.numel() for p in resnet.parameters())
    grads = resnet.layer1[0].conv1.weight.grad is not None, resnet.fc.weight.grad is not None
    print(f"resnet18 ({resnet_weights} weights), {trainable(resnet):,} of {total:,} parameters "
          f"trainable: {list(batch.shape)} -> logits {list(logits.shape)}; after backward() the "
          f"body has a gradient: {grads[0]}, the new fc: {grads[1]}")  # fmt: skip

# %% [markdown]
# ## 7. Results
# Each bar is the mean test accuracy over the draws of the few labels (the dots: each draw).

# %%
if __name__ == "__main__":
    means = {name: sum(scores) / len(scores) for name, scores in results.items()}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (name, scores) in enumerate(results.items()):
        ax.bar(i, means[name], color="C0" if i < len(WAYS) else "C1")
        ax.plot([i] * len(scores), scores, "k.")
    ax.set_xticks(range(len(results)), list(results), rotation=20)
    ax.set(ylabel="test accuracy", title=f"digits 5-9, {per_class} labels each")
    save_figure(fig, args.out / "results.png")
    fine_tune_gain = means["fine-tune"] - means["scratch"]
    probe_gain = means["rotation probe"] - means["random probe"]
    print("\n".join(f"{name:>14}: {value:.4f}" for name, value in means.items()))
    print(f"fine-tuning beats training from scratch by {100 * fine_tune_gain:.1f} points; the "
          f"rotation probe beats the random probe by {100 * probe_gain:.1f} points")  # fmt: skip
    metrics = {
        **{f"{name.replace(' ', '_').replace('-', '_')}_accuracy": v for name, v in means.items()},
        "fine_tune_gain": fine_tune_gain, "probe_gain": probe_gain, "per_draw": results,
        "labels_per_class": args.labels_per_class, "draws": draws, "few_epochs": few_epochs,
        "source_test_accuracy": source_accuracy, "pretext_accuracy": pretext_accuracy,
        "source_loss_history": source_losses, "pretext_loss_history": pretext_losses,
        "resnet18_weights": resnet_weights,
    }  # fmt: skip
    write_metrics(args.out, metrics, headline="fine_tune_accuracy")
