"""Tensors: create, index, reshape, store and move the data structure all of PyTorch is built on.

What you will learn
  - building tensors from lists, tuples and NumPy arrays (which ones copy, which share memory)
  - shape, dtype and device; indexing, slicing and assignment; cat and stack
  - arithmetic: matrix products, element-wise ops, reductions, in-place ops, broadcasting
  - shape ops (view, reshape, squeeze, unsqueeze, transpose, permute, expand, repeat)
  - how a tensor sits in memory: storage, offset, stride, contiguity
  - named tensors (a prototype API), moving tensors between devices, saving and loading them

How to run
    python lessons/01_tensors.py              # the whole lesson (a few seconds)
    python lessons/01_tensors.py --device cuda
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~3 s, full ~3 s on a 2-core CPU.
"""

# %% Imports
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from common.cli import lesson_args
from common.report import ReferenceValues, write_metrics

LESSON = Path(__file__).stem


# Reference values from CURRICULUM.md that this lesson reproduces: label -> (value, matches?)
references = ReferenceValues()


def show(label: str, value):
    """Print `label: value` (sizes as plain lists)."""
    if isinstance(value, torch.Size):
        value = list(value)
    print(f"  {label}: {value}")
    return value


def check(label: str, value, expected):
    """Print `value` next to the reference value it must equal, and remember the outcome."""
    if isinstance(value, torch.Size):
        value = list(value)
    ok = value == expected
    return references.check(label, value, expected, ok)


# %% 1. Construction
def construction() -> None:
    print("\n# 1. Building tensors")
    show("from a list", torch.tensor([[1, 2], [3, 4]]))
    show("from a tuple (float)", torch.tensor((1.0, 2.0, 3.0)))
    array = np.array([1.0, 2.0, 3.0])
    copied, shared = torch.tensor(array), torch.from_numpy(array)
    array[0] = 100.0  # torch.tensor copied the data; torch.from_numpy shares NumPy's memory
    check("after array[0] = 100, torch.tensor(array)", copied.tolist(), [1.0, 2.0, 3.0])
    check("after array[0] = 100, torch.from_numpy(array)", shared.tolist(), [100.0, 2.0, 3.0])

    show("ones(2, 3)", torch.ones(2, 3))
    show("eye(3)", torch.eye(3))
    show("full((2, 2), 7)", torch.full((2, 2), 7))
    show("arange(0, 10, 2)", torch.arange(0, 10, 2))
    show("linspace(0, 10, 5)", torch.linspace(0, 10, 5))
    show("rand(2) in [0, 1)", torch.rand(2))
    show("randn(2) ~ N(0, 1)", torch.randn(2))
    show("normal(mean=10, std=1, size=(2,))", torch.normal(10.0, 1.0, size=(2,)))
    base = torch.zeros(2, 2, dtype=torch.int64)
    show("zeros_like(int64 tensor, dtype=float32)", torch.zeros_like(base, dtype=torch.float32))
    # torch.tensor(data) builds from data; torch.Tensor(sizes) allocates uninitialised floats.
    show("torch.tensor([2, 3])", torch.tensor([2, 3]))
    show("torch.Tensor(2, 3).shape (values are garbage)", torch.Tensor(2, 3).shape)

    t = torch.rand(2, 3)
    show("shape / dtype / device / ndim", (list(t.shape), t.dtype, t.device, t.ndim))


# %% 2. Indexing and joining
def indexing_and_joining() -> None:
    print("\n# 2. Indexing, slicing, joining")
    t = torch.arange(12.0).reshape(3, 4)
    show("t", t)
    show("t[0]", t[0])
    show("t[:, 0]", t[:, 0])
    show("t[..., -1]", t[..., -1])
    check("t[:, 1].shape (one dimension fewer)", t[:, 1].shape, [3])
    check("t[:, 1:2].shape (a slice keeps it)", t[:, 1:2].shape, [3, 1])
    t[:, 1] = 0
    show("after t[:, 1] = 0", t)

    parts = [torch.zeros(2, 1, 3), torch.zeros(2, 2, 3), torch.zeros(2, 3, 3)]
    check("cat([2,1,3], [2,2,3], [2,3,3], dim=1).shape", torch.cat(parts, dim=1).shape, [2, 6, 3])
    check("stack three [2,3] on a new dim 0", torch.stack([torch.ones(2, 3)] * 3).shape, [3, 2, 3])


# %% 3. Arithmetic
def arithmetic() -> None:
    print("\n# 3. Arithmetic")
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    show("a @ a.T", a @ a.T)
    out = torch.empty(2, 2)
    torch.matmul(a, a.T, out=out)  # writes into an existing tensor
    show("matmul(a, a.T, out=out) then out", out)
    show("a * a (element-wise)", a * a)
    show("a.mul(a)", a.mul(a))
    statistics = (a.sum(), a.mean(), a.std(), a.norm())
    show("sum / mean / std / norm", [round(value.item(), 4) for value in statistics])
    check("type of a.sum().item()", type(a.sum().item()).__name__, "float")
    b = a.clone()
    b.add(1)  # returns a new tensor, b unchanged
    show("b after b.add(1)", b)
    b.add_(1)  # trailing underscore: in place
    show("b after b.add_(1)", b)
    show("abs / cos", (torch.tensor([-1.0, 2.0]).abs(), torch.cos(torch.tensor([0.0, torch.pi]))))


# %% 4. Shape operations and broadcasting
def shape_ops() -> None:
    print("\n# 4. Shape operations")
    t = torch.arange(6)
    show("arange(6).view(2, 3)", t.view(2, 3))
    show("view(2, 3).reshape(-1)", t.view(2, 3).reshape(-1))
    check("zeros(1, 2, 3).squeeze().shape", torch.zeros(1, 2, 3).squeeze().shape, [2, 3])
    check("zeros(4).unsqueeze(0).shape", torch.zeros(4).unsqueeze(0).shape, [1, 4])
    check("zeros(4).unsqueeze(1).shape", torch.zeros(4).unsqueeze(1).shape, [4, 1])
    check("zeros(2, 3).transpose(0, 1).shape", torch.zeros(2, 3).transpose(0, 1).shape, [3, 2])
    check(
        "zeros(2, 3, 4).permute(2, 0, 1).shape",
        torch.zeros(2, 3, 4).permute(2, 0, 1).shape,
        [4, 2, 3],
    )
    column = torch.tensor([[1], [2]])
    # expand makes a view (no copy, stride 0); repeat copies the data
    show("[[1],[2]].expand(2, 3)", column.expand(2, 3))
    show("expand stride (the 0 means: no copy)", column.expand(2, 3).stride())
    show("[[1],[2]].repeat(1, 3)", column.repeat(1, 3))
    weights, inputs, bias = torch.ones(3, 2), torch.ones(2, 5), torch.tensor([[1.0], [2.0], [3.0]])
    # bias (3, 1) is broadcast across the 5 columns of W @ X (3, 5)
    check("(W @ X + b).shape with W 3x2, X 2x5, b 3x1", (weights @ inputs + bias).shape, [3, 5])


# %% 5. Memory: storage, offset, stride
def memory() -> None:
    print("\n# 5. How a tensor sits in memory")
    t = torch.arange(9.0).reshape(3, 3)
    check("3x3 stride", t.stride(), (3, 1))
    check("row 1 storage offset", t[1].storage_offset(), 3)
    check("element [1][1] storage offset", t[1][1].storage_offset(), 4)
    check("t[0].stride()", t[0].stride(), (1,))

    points = torch.arange(6.0).reshape(3, 2)
    transposed = points.t()  # no copy: only the stride changes
    check("(3, 2) matrix stride", points.stride(), (2, 1))
    check("its transpose's stride", transposed.stride(), (1, 2))
    offset = transposed.storage_offset() + 1 * transposed.stride()[0] + 2 * transposed.stride()[1]
    check("transpose[1, 2] sits at storage offset", offset, 5)
    same = transposed.untyped_storage().data_ptr() == points.untyped_storage().data_ptr()
    check("transpose shares the storage", same, True)
    check("transpose is_contiguous()", transposed.is_contiguous(), False)
    compact = transposed.contiguous()  # a new storage, laid out row by row
    check("contiguous() stride", compact.stride(), (3, 1))
    fresh = compact.untyped_storage().data_ptr() != points.untyped_storage().data_ptr()
    check("contiguous() made new storage", fresh, True)
    detached = points.detach()
    detached[0, 0] = -1.0  # detach shares storage too
    check("points[0, 0] after detached[0, 0] = -1", points[0, 0].item(), -1.0)


# %% 6. Named tensors (prototype API) and the idiom that replaces them
DIMS = ("batch", "channel", "height", "width")


def named_tensors() -> None:
    print("\n# 6. Naming dimensions")
    images = torch.randn(2, 3, 30, 30)
    if hasattr(torch.Tensor, "align_to"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns that the API is a prototype
            named = images.refine_names(*DIMS)
            show("names (prototype named-tensor API)", named.names)
            reordered = named.align_to("channel", "batch", "height", "width")
            show("align_to(channel, batch, ...)", (list(reordered.shape), reordered.names))
            show("mean over ('height', 'width')", named.mean(("height", "width")).names)
            max_values, _ = named.max("width")
            show("max over 'width'", max_values.names)
    else:
        print(f"  Named tensors were a prototype and torch {torch.__version__} no longer has them.")
    # The portable idiom: keep the names beside the tensor and turn them into dim numbers.
    order = [DIMS.index(name) for name in ("channel", "batch", "height", "width")]
    show("permute by names (channel, batch, height, width)", images.permute(*order).shape)
    spatial = (DIMS.index("height"), DIMS.index("width"))
    show("mean over height and width -> (batch, channel)", images.mean(dim=spatial).shape)
    show("max over width -> (batch, channel, height)", images.amax(dim=DIMS.index("width")).shape)


# %% 7. Devices
def devices(device: torch.device) -> None:
    print("\n# 7. Devices")
    on_cpu = torch.ones(2)
    moved = on_cpu.to(device)
    show("moved to", moved.device)
    if device.type == "cpu":
        print("  No accelerator here. On a GPU, adding a CUDA tensor to a CPU tensor raises")
        print("  'Expected all tensors to be on the same device': move both with .to(device).")
        return
    try:
        on_cpu + moved.expand(3, 2)  # deliberately mixes devices
    except RuntimeError as error:
        show("mixing devices raises", str(error).splitlines()[0])


# %% 8. Saving and loading
def serialization() -> None:
    print("\n# 8. Saving and loading tensors")
    t = torch.arange(4.0)
    buffer = io.BytesIO()  # any file object works...
    torch.save(t, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # weights_only: never run code from a file
    check("round trip through a file object", loaded.tolist(), [0.0, 1.0, 2.0, 3.0])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.pt"  # ...and so does a path
        torch.save(t, path)
        loaded = torch.load(path, weights_only=True)
        check("round trip through a path", loaded.tolist(), [0.0, 1.0, 2.0, 3.0])
        try:
            import h5py
        except ImportError:
            print("  HDF5: skipped (pip install h5py to try it)")
            return
        with h5py.File(Path(folder) / "t.hdf5", "w") as file:
            file.create_dataset("coords", data=t.numpy())
        with h5py.File(Path(folder) / "t.hdf5", "r") as file:
            show("HDF5 round trip", torch.from_numpy(file["coords"][:]).tolist())


# %% main
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON)
    references.clear()
    construction()
    indexing_and_joining()
    arithmetic()
    shape_ops()
    memory()
    named_tensors()
    devices(args.device)
    serialization()

    metrics = {
        **references.metrics(),
    }
    write_metrics(args.out, metrics, headline="reference_values")
    return metrics


if __name__ == "__main__":
    main()
