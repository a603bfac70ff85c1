"""CNN architectures: the CIFAR-10 Net, Inception and residual blocks, BatchNorm and Dropout.

What you will learn
  - the CIFAR-10 `Net` (conv 3->6, conv 6->16, fc 400->120->84->10), its accuracy per class
  - an Inception module (16+24+24+24 = 88 channels) and residual blocks, in MNIST nets
  - BatchNorm and Dropout, `model.train()` vs `model.eval()`; a downsampling ResNet block
How to run
    python lessons/08_cnn_architectures.py                    # the CIFAR-10 Net
    python lessons/08_cnn_architectures.py --image-folder ../shared/datasets/CIFAR10-jpg
    python lessons/08_cnn_architectures.py --model resnet     # or inception; on MNIST
    python lessons/08_cnn_architectures.py --quick            # seconds
Data comes from the data root (torchvision's layout; offline, a synthetic stand-in);
`--image-folder DIR` reads DIR/train/<class>/* and DIR/test/<class>/* (resized to 32x32).

Time: --quick ~5 s, full ~100 s on a 2-core CPU (cifar_net on the JPEG copy, test accuracy about
0.67; --model resnet ~45 s and inception ~2 min on MNIST, about 0.99).
"""

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.datasets import ImageFolder

from common.cli import lesson_args, positive_int
from common.data import DataError, vision_dataset
from common.report import progress, save_figure, write_metrics

DEFAULT_EPOCHS = {"cifar_net": 12, "inception": 3, "resnet": 3}


def configure(parser) -> None:
    add = parser.add_argument
    add("--model", choices=list(DEFAULT_EPOCHS), default="cifar_net",
        help="cifar_net (CIFAR-10, default), inception or resnet (MNIST)")  # fmt: skip
    add("--image-folder", metavar="DIR", type=Path,
        help="train cifar_net on DIR/train/<class>/*, DIR/test/<class>/*")  # fmt: skip
    add("--train-images", type=positive_int, help="train on N images (default all; --quick 512)")
    parser.set_defaults(epochs=None)  # each model has its own number of epochs
    epochs = next(action for action in parser._actions if action.dest == "epochs")
    epochs.help = "training epochs (default: cifar_net 12, inception 3, resnet 3; --quick 2)"


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="08_cnn_architectures", configure=configure, batch_size=64)
    if args.image_folder and args.model != "cifar_net":
        raise DataError("--image-folder trains cifar_net; drop --model or use --model cifar_net")
    args.epochs = args.epochs or (2 if args.quick else DEFAULT_EPOCHS[args.model])
    device, started = args.device, time.perf_counter()

# %% [markdown]
# ## 1. The CIFAR-10 Net
# The net of PyTorch's CIFAR-10 tutorial: two 5×5 convolutions, each followed by ReLU and 2×2
# max pooling, then three linear layers. A 5×5 kernel without padding takes 2 pixels off each
# side: $3{\times}32{\times}32 \to 6{\times}28{\times}28 \to$ (pool) $6{\times}14{\times}14 \to
# 16{\times}10{\times}10 \to$ (pool) $16{\times}5{\times}5 = 400$ features for `fc1`.


# %%
class Net(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1, self.conv2, self.pool = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5), nn.MaxPool2d(2)
        self.fc1, self.fc2 = nn.Linear(400, 120), nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = torch.flatten(self.pool(F.relu(self.conv2(x))), 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def net_shapes() -> dict:
    net = Net()
    return {"Net on 2x3x32x32": list(net(torch.zeros(2, 3, 32, 32)).shape),
            "Net fc1 inputs (16x5x5)": net.fc1.in_features,
            "Net parameters": sum(p.numel() for p in net.parameters())}  # fmt: skip


if __name__ == "__main__":
    for label, value in net_shapes().items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 2. Inception: several kernel sizes side by side
# Which kernel size is best? An Inception module runs a 1×1, a 5×5, a double 3×3 and an
# average-pool branch on the same input, each padded to keep $H \times W$, and concatenates them
# along the channels: $16 + 24 + 24 + 24 = 88$ (1×1 convs shrink the channels first, so the big
# kernels stay cheap). The MNIST net, a plain chain of layers and so an `nn.Sequential`, leaves
# $88 \times 4 \times 4 = 1408$ features after its second module for the last linear layer.


# %%
class InceptionA(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.branch1x1, self.branch_pool = nn.Conv2d(channels, 16, 1), nn.Conv2d(channels, 24, 1)
        self.branch5x5 = nn.Sequential(nn.Conv2d(channels, 16, 1), nn.Conv2d(16, 24, 5, padding=2))
        self.branch3x3 = nn.Sequential(nn.Conv2d(channels, 16, 1), nn.Conv2d(16, 24, 3, padding=1),
                                       nn.Conv2d(24, 24, 3, padding=1))  # fmt: skip

    def forward(self, x):
        pooled = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        branches = [self.branch1x1(x), self.branch5x5(x), self.branch3x3(x), pooled]
        return torch.cat(branches, dim=1)  # 16 + 24 + 24 + 24 = 88 channels, same H x W


def inception_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(), InceptionA(10),   # 88 x 12 x 12
        nn.Conv2d(88, 20, 5), nn.MaxPool2d(2), nn.ReLU(), InceptionA(20),  # 88 x 4 x 4
        nn.Flatten(), nn.Linear(1408, 10))  # fmt: skip


def inception_shapes() -> dict:
    net, channels = inception_net(), InceptionA(10)(torch.zeros(2, 10, 12, 12)).shape[1]
    return {"InceptionA channels (16+24+24+24)": channels,
            "Inception net fc inputs (88x4x4)": net[-1].in_features,
            "Inception net parameters": sum(p.numel() for p in net.parameters())}  # fmt: skip


if __name__ == "__main__":
    for label, value in inception_shapes().items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 3. BatchNorm and Dropout: why `model.eval()` matters
# `BatchNorm2d` goes right after a convolution, before the activation: it scales each channel to
# mean 0 and variance 1, then by a learned $\gamma$ plus a learned shift $\beta$ (so the conv needs
# no bias: `bias=False`). Training, it uses the batch's statistics and keeps running averages of
# them; evaluating, those averages. Dropout zeroes a random share $p$ of its inputs and scales the
# rest by $1/(1-p)$ in training, and does nothing in evaluation. Forget `model.eval()` before
# testing and predictions turn random and batch-dependent.


# %%
def train_vs_eval() -> dict[str, bool]:
    """The same input twice through a conv -> BatchNorm -> ReLU -> Dropout model, in each mode."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 6 * 6, 2))  # fmt: skip
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    training = [model.train()(x) for _ in range(2)]  # Dropout draws a new mask on each call
    with torch.no_grad():
        evaluating = [model.eval()(x) for _ in range(2)]
    return {"train mode, same input twice: equal outputs?": torch.equal(*training),
            "eval mode, same input twice: equal outputs?": torch.equal(*evaluating)}  # fmt: skip


if __name__ == "__main__":
    for label, value in train_vs_eval().items():
        print(f"{label} {value}")

# %% [markdown]
# ## 4. Residual blocks: learn a correction, add it to the input
# A residual block computes $y = \mathrm{relu}(x + F(x))$, $F$ being two shape-keeping 3×3 convs:
# a block that should do almost nothing only learns $F \approx 0$, and the identity path carries
# the gradient straight through deep stacks. The MNIST net (conv 1→16, block, conv 16→32, block)
# ends with $32 \times 4 \times 4 = 512$ features. ResNet's block adds BatchNorm and may halve
# $H \times W$ with a stride-2 conv; then $x$ no longer fits $F(x)$, and a stride-2 1×1 conv
# on the shortcut reshapes it.


# %%
class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def residual_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.MaxPool2d(2), nn.ReLU(), ResidualBlock(16),   # 16 x 12 x 12
        nn.Conv2d(16, 32, 5), nn.MaxPool2d(2), nn.ReLU(), ResidualBlock(32),  # 32 x 4 x 4
        nn.Flatten(), nn.Linear(512, 10))  # fmt: skip


class ResNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))  # fmt: skip

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))  # conv -> BatchNorm -> activation
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def residual_shapes() -> dict:
    net, x = residual_net(), torch.zeros(2, 64, 32, 32)
    return {"residual net fc inputs (32x4x4)": net[-1].in_features,
            "residual net parameters": sum(p.numel() for p in net.parameters()),
            "ResNetBlock(64, 128, stride 2) on 2x64x32x32": list(ResNetBlock(64, 128, 2)(x).shape),
            "ResNetBlock(64, 64) on 2x64x32x32": list(ResNetBlock(64, 64)(x).shape)}  # fmt: skip


if __name__ == "__main__":
    for label, value in residual_shapes().items():
        print(f"{label}: {value}")
    print(f"the downsampling shortcut: {ResNetBlock(64, 128, 2).shortcut}")

# %% [markdown]
# ## 5. The data, decoded once into one uint8 tensor per split
# Lesson 03 decodes and transforms every image on every epoch: for the CIFAR-10 JPEGs, 60,000
# decodes per epoch, more work than training this small Net on two cores. So each split is
# decoded **once** into an N×3×32×32 uint8 tensor (184 MB for all of CIFAR-10; torchvision keeps
# its datasets that way in `dataset.data`), and an epoch only slices it. Each channel is then
# standardized with the mean and standard deviation of the *training* images.


# %%
def image_folder_split(folder: Path, split: str, limit: int | None = None, classes=None):
    """DIR/split/<class>/* as (N x 3 x 32 x 32 uint8 images, labels, class names)."""
    if not (folder / split).is_dir():
        raise DataError(f"--image-folder: {folder / split} is not a folder "
                        f"(expected {folder}/{split}/<class>/<images>)")  # fmt: skip
    try:  # ImageFolder only lists the files here: (path, class index) pairs
        listing = ImageFolder(str(folder / split))
    except (FileNotFoundError, OSError) as error:
        raise DataError(f"--image-folder: {error}") from None
    if classes is not None and listing.classes != classes:
        raise DataError(f"--image-folder: {folder / split} has other classes than train/")
    samples = listing.samples
    if limit is not None:  # a spread over every class, not the first folder only
        samples = samples[:: max(len(samples) // limit, 1)][:limit]
    pixels = np.empty((len(samples), 32, 32, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(progress(samples, desc=f"decoding {split}")):
        try:
            with Image.open(path) as image:
                pixels[i] = image.convert("RGB").resize((32, 32), Image.BILINEAR)
        except OSError as error:
            raise DataError(f"--image-folder: cannot read {path}: {error}") from None
    labels = torch.tensor([label for _, label in samples])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2), labels, listing.classes


def torchvision_split(name: str, args, train: bool, limit: int | None = None):
    """A torchvision dataset's `.data` as (N x C x H x W uint8 images, labels, class names)."""
    dataset = vision_dataset(name, args, train=train)
    images = torch.as_tensor(dataset.data[:limit])  # CIFAR-10 keeps a numpy N x H x W x C array
    images = images.permute(0, 3, 1, 2) if images.dim() == 4 else images.unsqueeze(1)
    return images, torch.as_tensor(dataset.targets[:limit]), dataset.classes


if __name__ == "__main__":
    train_limit = args.train_images or (512 if args.quick else None)
    test_limit = 256 if args.quick else None
    if args.image_folder:
        train = image_folder_split(args.image_folder.expanduser(), "train", train_limit)
        test = image_folder_split(args.image_folder.expanduser(), "test", test_limit, train[2])
    else:
        name = "CIFAR10" if args.model == "cifar_net" else "MNIST"
        train = torchvision_split(name, args, True, train_limit)
        test = torchvision_split(name, args, False, test_limit)
    classes, test_labels = train[2], test[1]
    # The notes use Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) and say it maps pixels to [0, 1];
    # (x - 0.5) / 0.5 maps [0, 1] to [-1, 1]. Standardizing per channel also centres each one.
    train_images, test_images = train[0].float() / 255, test[0].float() / 255
    std, mean = torch.std_mean(train_images, dim=(0, 2, 3), keepdim=True)
    std = std.clamp_min(1e-3)  # a channel that never changes would divide by zero
    train_images, test_images = (train_images - mean) / std, (test_images - mean) / std
    train_set, test_set = TensorDataset(train_images, train[1]), TensorDataset(test_images, test[1])
    print(f"{len(train_set):,} training and {len(test_set):,} test images of "
          f"{list(train_images.shape[1:])}, {len(classes)} classes; "
          f"channel means {mean.flatten().numpy().round(3)}")  # fmt: skip

# %% [markdown]
# ## 6. Training
# The plain loop of lesson 07. SGD with momentum and a one-cycle schedule (the learning rate
# climbs to 0.05, then anneals to almost 0, a step every batch) trains these small nets far
# faster than the notes' fixed learning rate. On photos, a random left-right flip of half of
# each batch adds variety for free: a cat facing left is still a cat.


# %%
MODELS = {"cifar_net": Net, "inception": inception_net, "resnet": residual_net}


def train_epoch(model, loader, loss_fn, optimizer, scheduler, device, augment=False) -> float:
    """One pass over the training data; returns the mean training loss."""
    model.train()  # BatchNorm and Dropout in training mode (section 3)
    total = 0.0
    for images, labels in progress(loader, desc="training"):
        images, labels = images.to(device), labels.to(device)
        if augment:  # mirror a random half of the batch left-right
            flip = torch.rand(len(images), 1, 1, 1, device=device) < 0.5
            images = torch.where(flip, images.flip(3), images)
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()  # one-cycle: a new learning rate every batch
        total += loss.item()
    return total / len(loader)


if __name__ == "__main__":
    model = MODELS[args.model]().to(device)
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True)  # lesson_args seeded it
    test_loader = DataLoader(test_set, batch_size=1000)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = args.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps)
    history = {"loss_history": [], "accuracy_history": [], "epoch_seconds": []}
    for epoch in range(1, args.epochs + 1):
        epoch_started = time.perf_counter()  # loss.item() waits for the device, so this is fair
        loss = train_epoch(model, train_loader, loss_fn, optimizer, scheduler, device,
                           augment=args.model == "cifar_net")  # fmt: skip
        seconds = time.perf_counter() - epoch_started
        # The notes "test" their MNIST nets on the training set by mistake; this is the test split.
        model.eval()  # BatchNorm and Dropout in evaluation mode
        with torch.no_grad():
            predictions = torch.cat([model(X.to(device)).argmax(1).cpu() for X, _ in test_loader])
        accuracy = (predictions == test_labels).float().mean().item()
        for key, value in zip(history, (loss, accuracy, seconds)):
            history[key].append(value)
        print(f"epoch {epoch}: train loss {loss:.4f} | test accuracy {accuracy:.4f} | "
              f"{seconds:.1f} s")  # fmt: skip

# %% [markdown]
# ## 7. Results: accuracy per class and a look at the predictions
# One overall accuracy hides which classes the net confuses; the accuracy within each true class
# shows it (on CIFAR-10, cats and dogs are the hard ones). The grid shows test images with their
# true label and the prediction, green when right and red when wrong.

# %%
if __name__ == "__main__":
    per_class = {classes[c]: round((predictions[test_labels == c] == c).float().mean().item(), 4)
                 for c in range(len(classes)) if (test_labels == c).any()}  # fmt: skip
    print("accuracy per class: " + ", ".join(f"{k} {v:.2f}" for k, v in per_class.items()))
    fig, axes = plt.subplots(3, 6, figsize=(11, 7))
    for ax, i in zip(axes.flat, range(0, len(test_images), max(len(test_images) // 18, 1))):
        shown = (test_images[i] * std[0] + mean[0]).permute(1, 2, 0).clamp(0, 1).squeeze()
        ax.imshow(shown.numpy(), cmap="gray" if shown.dim() == 2 else None)
        color = "green" if predictions[i] == test_labels[i] else "red"
        ax.set_title(f"{classes[test_labels[i]]}\n→ {classes[predictions[i]]}", color=color)
        ax.axis("off")
    fig.suptitle("test images: true label → prediction")
    save_figure(fig, args.out / "predictions.png")
    metrics = {"test_accuracy": history["accuracy_history"][-1], "model": args.model,
               "data_source": str(args.image_folder or "torchvision"),
               "per_class_accuracy": per_class, **history,
               "wall_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    print(f"final test accuracy {metrics['test_accuracy']:.4f}; "
          f"{metrics['wall_seconds']:.0f} s for the whole lesson")  # fmt: skip
    write_metrics(args.out, metrics, headline="test_accuracy")
