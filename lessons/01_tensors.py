"""Tensors: create, index, reshape, store and move the data structure all of PyTorch is built on.

What you will learn
  - building tensors from lists, tuples and NumPy arrays (which ones copy, which share memory)
  - shape, dtype and device; indexing, slicing and assignment; cat and stack
  - arithmetic: matrix products, element-wise ops, reductions, in-place ops, broadcasting
  - shape ops (view, reshape, squeeze, unsqueeze, transpose, permute, expand, repeat)
  - how a tensor sits in memory: storage, offset, stride, contiguity
  - named dimensions, moving tensors between devices, saving and loading them

How to run
    python lessons/01_tensors.py              # the whole lesson
    python lessons/01_tensors.py --device cuda
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).
The saved tensors go to outputs/01_tensors/.

Time: --quick ~4 s, full ~4 s on a 2-core CPU (--quick runs the same lesson).
"""

# %%
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from common.cli import lesson_args
from common.report import write_metrics


def show(values: dict) -> None:
    """Print a section's results, one `label: value` line each."""
    for label, value in values.items():
        print(f"{label}: {value}")


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="01_tensors")
    device = args.device

# %% [markdown]
# ## 1. Building tensors
# A tensor is an n-dimensional array of numbers of one `dtype`. `torch.tensor(data)` **copies**
# a list, a tuple or a NumPy array; `torch.from_numpy(array)` **shares** the array's memory, so
# a change to the array shows up in the tensor. Factory functions build tensors from a shape;
# `*_like` functions copy the shape of another tensor (and may change its dtype).
# Careful with the capital T: `torch.Tensor(2, 3)` allocates an uninitialised 2×3 float tensor.


# %%
def construction() -> dict:
    """Tensors from Python data and NumPy, the factory functions, and a tensor's attributes."""
    array = np.array([1.0, 2.0, 3.0])
    copied, shared = torch.tensor(array), torch.from_numpy(array)
    array[0] = 100.0  # torch.tensor made a copy; torch.from_numpy shares the array's memory
    t, ints = torch.rand(2, 3), torch.zeros(2, dtype=torch.int64)
    as_floats = torch.zeros_like(ints, dtype=torch.float32)  # the shape of ints, a new dtype
    values = {
        "from a list": torch.tensor([[1, 2], [3, 4]]).tolist(),
        "from a tuple (float)": torch.tensor((1.0, 2.0, 3.0)).tolist(),
        "after array[0] = 100, torch.tensor(array)": copied.tolist(),
        "after array[0] = 100, torch.from_numpy(array)": shared.tolist(),
        "ones(2, 3)": torch.ones(2, 3).tolist(),
        "eye(3)": torch.eye(3).tolist(),
        "full((2, 2), 7)": torch.full((2, 2), 7).tolist(),
        "arange(0, 10, 2)": torch.arange(0, 10, 2).tolist(),
        "linspace(0, 10, 5)": torch.linspace(0, 10, 5).tolist(),
        "zeros_like(int64 zeros, dtype=float32)": as_floats.tolist(),
        "torch.tensor([2, 3]) (the data)": torch.tensor([2, 3]).tolist(),
        "torch.Tensor(2, 3).shape (a size; the values are garbage)": list(torch.Tensor(2, 3).shape),
        "rand(2, 3).shape": list(t.shape),
        "rand(2, 3).dtype": str(t.dtype),
        "rand(2, 3).device": str(t.device),
        "rand(2, 3).ndim": t.ndim,
    }  # fmt: skip
    samples = {"rand(2) in [0, 1)": torch.rand(2), "randn(2) ~ N(0, 1)": torch.randn(2),
               "normal(mean=10, std=1, size=(2,))": torch.normal(10.0, 1.0, (2,))}  # fmt: skip
    for label, sample in samples.items():  # random numbers, rounded to 4 places
        values[label] = [round(v, 4) for v in sample.tolist()]
    return values


if __name__ == "__main__":
    built = construction()
    show(built)

# %% [markdown]
# ## 2. Indexing, slicing, joining
# Indexing works as in NumPy: `t[0]` is the first row, `t[:, 0]` the first column, `t[..., -1]`
# the last entry along the last dimension whatever the number of dimensions. An integer index
# removes its dimension, a slice keeps it. `cat` joins tensors along an existing dimension
# (the others must match); `stack` adds a new one.


# %%
def indexing_and_joining() -> dict:
    """Rows, columns, assignment into a slice, and cat / stack shapes."""
    t = torch.arange(12.0).reshape(3, 4)
    values = {
        "t": t.tolist(),
        "t[0]": t[0].tolist(),
        "t[:, 0]": t[:, 0].tolist(),
        "t[..., -1]": t[..., -1].tolist(),
        "t[:, 1].shape (one dimension fewer)": list(t[:, 1].shape),
        "t[:, 1:2].shape (a slice keeps it)": list(t[:, 1:2].shape),
    }
    t[:, 1] = 0
    values["after t[:, 1] = 0"] = t.tolist()
    parts = [torch.zeros(2, 1, 3), torch.zeros(2, 2, 3), torch.zeros(2, 3, 3)]
    values["cat([2,1,3], [2,2,3], [2,3,3], dim=1).shape"] = list(torch.cat(parts, dim=1).shape)
    values["stack three [2,3] on a new dim 0"] = list(torch.stack([torch.ones(2, 3)] * 3).shape)
    return values


if __name__ == "__main__":
    indexed = indexing_and_joining()
    show(indexed)

# %% [markdown]
# ## 3. Arithmetic
# `@` (or `matmul`) is the matrix product $C_{ij} = \sum_k A_{ik} B_{kj}$; `*` (or `mul`)
# multiplies element by element. Reductions such as `sum`, `mean`, `std` and `norm` return
# 0-dimensional tensors; `.item()` turns one into a Python number. A method ending in `_`
# works in place: `b.add(1)` returns a new tensor, `b.add_(1)` changes `b`.


# %%
def arithmetic() -> dict:
    """Products, reductions, .item(), and in-place against out-of-place."""
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = torch.empty(2, 2)
    torch.matmul(a, a.T, out=out)  # writes the result into an existing tensor
    b, reductions = a.clone(), (a.sum(), a.mean(), a.std(), a.norm())
    values = {
        "a @ a.T": (a @ a.T).tolist(),
        "matmul(a, a.T, out=out), then out": out.tolist(),
        "a * a (element-wise)": (a * a).tolist(),
        "a.mul(a)": a.mul(a).tolist(),
        "sum / mean / std / norm": [round(r.item(), 4) for r in reductions],
        "type of a.sum().item()": type(a.sum().item()).__name__,
        "b.add(1)[0] (a new tensor)": b.add(1)[0].tolist(),
        "b[0] after b.add(1)": b[0].tolist(),
    }
    b.add_(1)
    values["b[0] after b.add_(1)"] = b[0].tolist()
    values["abs([-1, 2])"] = torch.tensor([-1.0, 2.0]).abs().tolist()
    values["cos([0, pi])"] = torch.cos(torch.tensor([0.0, torch.pi])).tolist()
    return values


if __name__ == "__main__":
    computed = arithmetic()
    show(computed)

# %% [markdown]
# ## 4. Shape operations and broadcasting
# `view` and `reshape` change the shape, not the data (`-1` means "whatever is left");
# `squeeze` drops dimensions of size 1 and `unsqueeze(d)` inserts one at position `d`;
# `transpose` swaps two dimensions and `permute` reorders all of them. `expand` repeats a size-1
# dimension *without copying* (its stride is 0); `repeat` copies. Broadcasting stretches size-1
# dimensions the same way, so a bias $b$ of shape 3×1 adds to every column of $WX$ (3×5).


# %%
def shape_ops() -> dict:
    """Reshaping, (un)squeezing, transposing, expand against repeat, a broadcast bias."""
    t, column = torch.arange(6), torch.tensor([[1], [2]])
    weights, inputs, bias = torch.ones(3, 2), torch.ones(2, 5), torch.tensor([[1.0], [2.0], [3.0]])
    return {
        "arange(6).view(2, 3)": t.view(2, 3).tolist(),
        "view(2, 3).reshape(-1)": t.view(2, 3).reshape(-1).tolist(),
        "zeros(1, 2, 3).squeeze().shape": list(torch.zeros(1, 2, 3).squeeze().shape),
        "zeros(4).unsqueeze(0).shape": list(torch.zeros(4).unsqueeze(0).shape),
        "zeros(4).unsqueeze(1).shape": list(torch.zeros(4).unsqueeze(1).shape),
        "zeros(2, 3).transpose(0, 1).shape": list(torch.zeros(2, 3).transpose(0, 1).shape),
        "zeros(2, 3, 4).permute(2, 0, 1).shape": list(torch.zeros(2, 3, 4).permute(2, 0, 1).shape),
        "[[1],[2]].expand(2, 3)": column.expand(2, 3).tolist(),
        "its stride (0: no copy)": column.expand(2, 3).stride(),
        "[[1],[2]].repeat(1, 3)": column.repeat(1, 3).tolist(),
        "(W @ X + b).shape with W 3x2, X 2x5, b 3x1": list((weights @ inputs + bias).shape),
    }  # fmt: skip


if __name__ == "__main__":
    reshaped = shape_ops()
    show(reshaped)

# %% [markdown]
# ## 5. How a tensor sits in memory
# The numbers live in a flat, one-dimensional **storage**; a tensor is a view into it, given by
# a storage offset and a **stride** per dimension: element $[i, j]$ sits at
# $\text{offset} + i \cdot \text{stride}_0 + j \cdot \text{stride}_1$. A 3×3 tensor has stride
# (3, 1): one row further is 3 places on. Transposing only swaps the strides, so the transpose
# shares the storage but is no longer *contiguous* (row by row); `contiguous()` copies it into
# new storage. `detach()` shares the storage too.


# %%
def memory() -> dict:
    """Offsets and strides of a 3x3 tensor and of a transpose; contiguity; detach."""
    t = torch.arange(9.0).reshape(3, 3)
    points = torch.arange(6.0).reshape(3, 2)
    transposed = points.t()  # no copy: only the strides change
    offset = transposed.storage_offset() + 1 * transposed.stride()[0] + 2 * transposed.stride()[1]
    compact = transposed.contiguous()
    # The notes compare id(t.untyped_storage()): each call makes a new Python wrapper whose id
    # can be reused, so that test can mislead. The address of the data, data_ptr(), cannot.
    storage = points.untyped_storage().data_ptr()
    values = {
        "3x3 stride": t.stride(),
        "row 1 storage offset": t[1].storage_offset(),
        "element [1][1] storage offset": t[1][1].storage_offset(),
        "t[0].stride()": t[0].stride(),
        "(3, 2) matrix stride": points.stride(),
        "its transpose's stride": transposed.stride(),
        "transpose[1, 2] sits at storage offset": offset,
        "transpose shares the storage": transposed.untyped_storage().data_ptr() == storage,
        "transpose is_contiguous()": transposed.is_contiguous(),
        "contiguous() stride": compact.stride(),
        "contiguous() made new storage": compact.untyped_storage().data_ptr() != storage,
    }
    detached = points.detach()
    detached[0, 0] = -1.0
    values["points[0, 0] after detached[0, 0] = -1"] = points[0, 0].item()
    return values


if __name__ == "__main__":
    layout = memory()
    show(layout)

# %% [markdown]
# ## 6. Naming dimensions
# Is an image batch (batch, channel, height, width) or (channel, batch, height, width)? Older
# PyTorch had a *prototype* API for named tensors (`names=`, `refine_names`, `align_to`,
# reductions by name). The notes build on it, but it never became stable and newer releases
# lack it (torch 2.14 has none), so the lesson uses it only where it exists. The portable
# idiom keeps the names beside the tensor and turns them into dimension numbers.


# %%
DIMS = ("batch", "channel", "height", "width")


def named_dimensions() -> dict:
    """The named-tensor prototype where torch has it, and the portable idiom everywhere."""
    images = torch.randn(2, 3, 30, 30)
    values = {}
    if hasattr(torch.Tensor, "align_to"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns that it is a prototype
            named = images.refine_names(*DIMS)
            reordered = named.align_to("channel", "batch", "height", "width")
            values["names (prototype API)"] = named.names
            values["align_to(channel, batch, height, width)"] = list(reordered.shape)
            values["names after a mean over height, width"] = named.mean(("height", "width")).names
    else:
        values["named tensors"] = f"torch {torch.__version__} has no named-tensor prototype"
    order = [DIMS.index(name) for name in ("channel", "batch", "height", "width")]
    spatial = (DIMS.index("height"), DIMS.index("width"))
    values["permute by names (channel, batch, height, width)"] = list(images.permute(*order).shape)
    values["mean over height and width -> (batch, channel)"] = list(images.mean(dim=spatial).shape)
    values["max over width -> (batch, channel, height)"] = list(images.amax(dim=3).shape)
    return values


if __name__ == "__main__":
    named = named_dimensions()
    show(named)

# %% [markdown]
# ## 7. Devices
# Every tensor lives on a device: the CPU, or an accelerator (a CUDA GPU, Apple's MPS).
# `t.to(device)` returns a copy there. The operands of an operation must all sit on the same
# device, or PyTorch raises "Expected all tensors to be on the same device". `--device` (or
# `auto`, the default) chooses the device this lesson runs on.


# %%
def devices(device: torch.device) -> dict:
    """Move a tensor to `device`; on an accelerator, show what mixing devices raises."""
    on_cpu = torch.ones(2)
    moved = on_cpu.to(device)
    values = {"torch.ones(2).to(device).device": str(moved.device)}
    if moved.device.type == "cpu":
        values["mixing devices"] = "not shown: there is no accelerator here"
        values["on one, cpu_tensor + gpu_tensor raises"] = (
            "Expected all tensors to be on the same device (the fix: move both with .to(device))"
        )
        return values
    try:
        on_cpu + moved.expand(3, 2)  # deliberately mixes devices
        values["mixing devices raises"] = "nothing"
    except RuntimeError as error:
        values["mixing devices raises"] = str(error).splitlines()[0]
    values["after moving both with .to(device)"] = (on_cpu.to(device) + moved).tolist()
    return values


if __name__ == "__main__":
    placed = devices(device)
    show(placed)

# %% [markdown]
# ## 8. Saving and loading tensors
# `torch.save(t, f)` writes a tensor to a file object or a path; `torch.load` reads it back.
# Pass `weights_only=True`: loading then accepts only tensors and plain containers and never
# runs code a stranger's file might carry. To share data with other tools, a general format
# such as HDF5 (through the `h5py` package) stores the NumPy array.


# %%
def serialization(folder: Path) -> dict:
    """Round trips through a file object and a file in `folder`; HDF5 when h5py is installed."""
    t = torch.arange(4.0)
    buffer = io.BytesIO()  # any file object works...
    torch.save(t, buffer)
    buffer.seek(0)
    values = {"round trip through a file object": torch.load(buffer, weights_only=True).tolist()}
    path = folder / "tensor.pt"  # ...and so does a path
    torch.save(t, path)
    values["round trip through a path"] = torch.load(path, weights_only=True).tolist()
    if importlib.util.find_spec("h5py") is None:
        values["HDF5"] = "skipped: h5py is not installed (pip install h5py to try it)"
        return values
    import h5py

    with h5py.File(folder / "tensor.hdf5", "w") as file:
        file.create_dataset("coords", data=t.numpy())
    with h5py.File(folder / "tensor.hdf5", "r") as file:
        values["HDF5 round trip"] = torch.from_numpy(file["coords"][:]).tolist()
    return values


if __name__ == "__main__":
    stored = serialization(args.out)
    show(stored)

# %% [markdown]
# ## Summary
# Everything the lesson printed, section by section, goes into `metrics.json`.

# %%
if __name__ == "__main__":
    sections = {
        "construction": built,
        "indexing_and_joining": indexed,
        "arithmetic": computed,
        "shape_ops": reshaped,
        "memory": layout,
        "named_dimensions": named,
        "devices": placed,
        "serialization": stored,
    }
    metrics = {"values_shown": sum(len(values) for values in sections.values()), **sections}
    print(f"{metrics['values_shown']} values shown in {len(sections)} sections")
    write_metrics(args.out, metrics, headline="values_shown")
