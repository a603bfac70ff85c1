"""Performance: where the time of a training step goes, and what makes it faster on your device.

What you will learn
  - timing done right: warm-up steps, synchronizing an accelerator before reading the clock,
    the median of many steps
  - the input pipeline: per-sample transforms vs a split kept as one tensor on the device;
    DataLoader workers; pinned memory + `non_blocking` copies on CUDA
  - CPU threads, batch size, `channels_last`
  - mixed precision with `torch.autocast` (bfloat16 on a CPU, float16 + `GradScaler` on CUDA)
    and its loss curve beside float32
  - `torch.compile`: its compile time, its outputs equal to eager, its speed
How to run
    python lessons/20_performance.py            # every measurement, torch.compile too
    python lessons/20_performance.py --quick    # a few steps each, no torch.compile
    python lessons/20_performance.py --device cuda
Time: --quick ~10 s, full ~60 s on a 2-core CPU.
"""

# %%
import logging
import shutil
import statistics
import time

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from common.cli import lesson_args
from common.data import vision_dataset
from common.report import save_figure, write_metrics

NOT_HERE = "not on this device"

if __name__ == "__main__":
    args = lesson_args(__doc__, name="20_performance", batch_size=64)
    device = args.device
    steps, warmup = (4, 1) if args.quick else (40, 5)

# %% [markdown]
# ## 1. Timing done right
# A GPU runs *asynchronously*: `loss.backward()` returns as soon as the work is queued, so a
# clock read right after it measures almost nothing. `torch.accelerator.synchronize()` waits
# until the device is done (on a CPU there is nothing to wait for). The first steps are slow
# (memory allocation, kernel selection, caches): drop them as **warm-up**. One step can be
# delayed by anything else on the machine: report the **median** of many steps.
# Each measurement below times whole training steps, fetching the batch included.


# %%
def synchronize(device: torch.device) -> None:
    if device.type != "cpu":  # torch.accelerator arrived in torch 2.6; older: torch.cuda
        accelerator = getattr(torch, "accelerator", None)
        (accelerator or torch.cuda).synchronize()


def images_per_second(step, batches, device, non_blocking=False) -> float:
    """Run `warmup + steps` training steps on `batches`; images/s from the median step time."""
    batches, times = iter(batches), []
    for i in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        X, y = next(batches)
        step(X.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking))
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return len(X) / statistics.median(times)


def show(name: str) -> None:
    value = results[name]
    print(f"{name}: {value if isinstance(value, str) else f'{value:,.0f} images/s'}")


def make_model(seed: int = 0, memory_format=torch.contiguous_format) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    return model.to(device, memory_format=memory_format)


def training_step(model, dtype=None, scaler=None):
    """The plain step of lessons 06-08; with `dtype`, under autocast (and a GradScaler)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn, losses = nn.CrossEntropyLoss(), []

    def step(X, y):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(X), y)  # the forward pass in `dtype` where it is safe
        optimizer.zero_grad()
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:  # float16 gradients can underflow to 0: scale the loss up, unscale before step
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        losses.append(loss.item())

    step.losses = losses
    return step


if __name__ == "__main__":
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize([0.2860], [0.3530])])  # fmt: skip
    train_set = vision_dataset("FashionMNIST", args, train=True, transform=transform)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    results = {"plain loop: per-sample transforms, DataLoader": images_per_second(
        training_step(make_model()), loader, device)}  # fmt: skip
    baseline = results["plain loop: per-sample transforms, DataLoader"]
    print(f"plain loop: {baseline:,.0f} images/s (median of {steps} steps after {warmup} warm-up)")

# %% [markdown]
# ## 2. The input pipeline
# The plain loop converts each image with `ToImage`/`ToDtype`/`Normalize` in Python, one at a
# time, then collates a batch. `num_workers=2` does that in 2 background processes (on a
# 2-core CPU they compete with training). When the whole split fits in memory, converting it
# **once** into one tensor, kept on the device, leaves only an index and a slice per batch. On
# CUDA, **pinned** (page-locked) host memory lets `.to(device, non_blocking=True)` copy while
# the GPU computes.


# %%
def tensor_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed=0):
    """Endless shuffled batches sliced from tensors that already hold the whole split."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(labels), generator=generator).to(labels.device)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield images[index], labels[index]


if __name__ == "__main__":
    limit = 4096 if args.quick else None
    images = ((train_set.data[:limit].float() / 255 - 0.2860) / 0.3530).unsqueeze(1)
    labels = torch.as_tensor(train_set.targets[:limit])
    on_device = images.to(device), labels.to(device)
    workers = DataLoader(train_set, args.batch_size, shuffle=True, num_workers=2,
                         persistent_workers=True)  # fmt: skip
    results["DataLoader, num_workers=2"] = images_per_second(
        training_step(make_model()), workers, device)  # fmt: skip
    results["whole split as one tensor on the device"] = images_per_second(
        training_step(make_model()), tensor_batches(*on_device, args.batch_size), device
    )
    if device.type == "cuda":
        pinned = images.pin_memory(), labels.pin_memory()
        results["pinned host tensor, non_blocking copies"] = images_per_second(
            training_step(make_model()), tensor_batches(*pinned, args.batch_size), device, True
        )
    else:
        results["pinned host tensor, non_blocking copies"] = NOT_HERE
    for name in list(results)[1:]:
        show(name)

# %% [markdown]
# ## 3. Threads, batch size and memory format
# On a CPU, PyTorch splits each operation over `torch.get_num_threads()` threads; for a small
# model, 1 thread can beat several (less coordination). A bigger batch amortizes the per-step
# overhead (Python, kernel launches) over more images, up to what the device computes at once.
# `channels_last` stores an N×C×H×W batch as N×H×W×C, the order many convolution kernels
# prefer; the model's weights are converted too.


# %%
def with_threads(count: int, measure):
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return measure()
    finally:
        torch.set_num_threads(saved)


if __name__ == "__main__":
    fast_batches = tensor_batches(*on_device, args.batch_size)
    if device.type == "cpu":
        for count in sorted({1, torch.get_num_threads()}):
            threads = f"{count} CPU thread" + "s" * (count > 1)
            results[f"{threads}, whole split tensor"] = with_threads(
                count, lambda: images_per_second(training_step(make_model()), fast_batches, device)
            )
    else:
        results["CPU threads"] = NOT_HERE
    for size in (16, 256):
        results[f"batch {size}, whole split tensor"] = images_per_second(
            training_step(make_model()), tensor_batches(*on_device, size), device
        )
    last = torch.channels_last
    results["channels_last, whole split tensor"] = images_per_second(
        training_step(make_model(memory_format=last)),
        ((X.contiguous(memory_format=last), y) for X, y in fast_batches),
        device,
    )
    for name in list(results)[4:]:
        show(name)

# %% [markdown]
# ## 4. Mixed precision: `torch.autocast`
# Inside `torch.autocast`, matrix products and convolutions run in a 16-bit type while sums and
# the loss stay in float32. **bfloat16** keeps float32's range (8 exponent bits) with fewer
# mantissa bits, so it needs no help; **float16** has more precision but a small range, so
# small gradients underflow to 0: `GradScaler` multiplies the loss by a large factor before
# `backward()` and divides the gradients before the step. Speed comes from hardware with fast
# 16-bit units (recent GPUs, some CPUs); the loss curve should follow float32's closely.


# %%
def precision_for(device: torch.device):
    """(dtype, needs a GradScaler) for autocast on this device, or None."""
    if device.type == "cuda":
        return torch.float16, True
    if device.type == "cpu":
        return torch.bfloat16, False
    return None


def loss_curves(dtype, use_scaler: bool, batches: int) -> dict[str, list[float]]:
    """The same model, data and seed trained in float32 and under autocast."""
    curves = {}
    for name, kind in (("float32", None), (str(dtype).removeprefix("torch."), dtype)):
        scaler = torch.amp.GradScaler(device.type) if use_scaler and kind else None
        step = training_step(make_model(), kind, scaler)
        for _, (X, y) in zip(range(batches), tensor_batches(*on_device, args.batch_size, seed=1)):
            step(X, y)
        curves[name] = step.losses
    return curves


if __name__ == "__main__":
    precision = precision_for(device)
    if precision is None:
        results["autocast"] = NOT_HERE
        curves = {}
    else:
        dtype, use_scaler = precision
        label = f"autocast {str(dtype).removeprefix('torch.')}" + " + GradScaler" * use_scaler
        scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        step = training_step(make_model(), dtype, scaler)
        results[label] = images_per_second(step, fast_batches, device)
        curves = loss_curves(dtype, use_scaler, 10 if args.quick else 150)
        show(label)
        for name, losses in curves.items():
            print(f"  {name}: loss {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} steps")

# %% [markdown]
# ## 5. `torch.compile`
# `torch.compile(model)` traces the model's Python into a graph the first time it runs and
# generates fused kernels for it (C++ on a CPU, Triton on a GPU): the first call is slow
# (seconds to minutes), later ones can be faster. Compile once, check the outputs against
# eager mode, then time it. On a CPU it needs a C++ compiler.


# %%
def compiler_missing() -> str | None:
    """Why torch.compile cannot run here, or None."""
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++", "cl")):
        return "no C++ compiler found (install g++ or clang, or Visual Studio's cl on Windows)"
    return None


def compile_and_check(batch) -> tuple[nn.Module, float, float]:
    """(compiled model, seconds to compile, largest output difference to eager mode)."""
    eager = make_model()
    compiled = torch.compile(make_model())
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA" on CPUs
    start = time.perf_counter()
    with torch.no_grad():
        out = compiled(batch)
    synchronize(device)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        difference = (out - eager(batch)).abs().max().item()
    return compiled, seconds, difference


if __name__ == "__main__":
    missing = compiler_missing()
    compile_seconds = compile_difference = None
    if args.quick or missing:
        reason = missing or "left out of --quick (compiling takes tens of seconds)"
        results["torch.compile"] = f"skipped: {reason}"
        print(f"torch.compile: skipped: {reason}")
    else:
        sample = next(tensor_batches(*on_device, args.batch_size))[0]
        compiled, compile_seconds, compile_difference = compile_and_check(sample)
        print(f"torch.compile: compiled in {compile_seconds:.1f} s; largest difference to "
              f"eager outputs {compile_difference:.1e}")  # fmt: skip
        results["torch.compile"] = images_per_second(training_step(compiled), fast_batches, device)
        show("torch.compile")

# %% [markdown]
# ## 6. The speed-up table
# Every measurement relative to the plain loop, on this device. The numbers are this machine's:
# run the lesson on yours (`--device cuda` on a GPU) and the order can change.


# %%
if __name__ == "__main__":
    speedups = {name: value / baseline for name, value in results.items()
                if not isinstance(value, str)}  # fmt: skip
    width = max(map(len, results))
    print(f"{'step (on ' + str(device) + ')':<{width}} | images/s | speed-up")
    for name, value in results.items():
        shown = f"{value:>8,.0f} | {speedups[name]:.2f}x" if name in speedups else value
        print(f"{name:<{width}} | {shown}")
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    bars.barh(list(speedups), list(speedups.values()))
    bars.axvline(1, color="gray", linestyle="--")
    bars.invert_yaxis()
    bars.set(xlabel="speed-up over the plain loop", title=f"training throughput on {device}")
    for name, losses in curves.items():
        curve.plot(losses, label=name, alpha=0.8)
    curve.set(xlabel="step", ylabel="training loss", title="float32 vs autocast")
    curve.legend()
    fig.tight_layout()
    save_figure(fig, args.out / "speedups.png")
    best = max(speedups, key=speedups.get)
    metrics = {
        "images_per_second": results,
        "speedups": speedups,
        "best": best,
        "best_speedup": speedups[best],
        "loss_curves": curves,
        "device": str(device),
        "compile_seconds": compile_seconds,
        "compile_difference": compile_difference,
    }
    write_metrics(args.out, metrics, headline="best_speedup")
