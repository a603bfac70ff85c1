"""Autograd: how PyTorch records a computation and computes its gradients for you.

What you will learn
  - a computational graph and the chain rule, done by hand and checked against autograd
  - `requires_grad`, `backward()` and `.grad`; gradients of a small logistic model
  - switching tracking off: `torch.no_grad()` and `detach()` (which shares memory)
  - `detach()` inside a graph: cutting one path of the gradient on purpose
  - vector-Jacobian products: `backward(v)`, gradients that accumulate, `grad.zero_()`
  - why `backward()` on a non-scalar fails, and the two ways to fix it
  - why every training loop calls `optimizer.zero_grad()`, and where gradients live

How to run
    python lessons/04_autograd.py              # the whole lesson (a few seconds)
    python lessons/04_autograd.py --device cuda
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~3 s, full ~3 s on a 2-core CPU.
"""

# %% Imports
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.cli import lesson_args
from common.report import ReferenceValues, write_metrics

LESSON = Path(__file__).stem

# Reference values from CURRICULUM.md that this lesson reproduces: label -> (value, matches?)
references = ReferenceValues()


def diagonal_and_rest(grad: torch.Tensor) -> list[list[float]]:
    """The distinct values on the diagonal of `grad`, and those off it."""
    on_diagonal = torch.eye(*grad.shape, dtype=torch.bool, device=grad.device)
    return [grad[on_diagonal].unique().tolist(), grad[~on_diagonal].unique().tolist()]


def show(label: str, value):
    """Print `label: value`, tensors as plain (nested) lists."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    print(f"  {label}: {value}")
    return value


def check(label: str, value, expected):
    """Print `value` next to the reference value it must equal, and remember the outcome."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    ok = value == expected
    return references.check(label, value, expected, ok)


# %% 1. A graph and the chain rule
def chain_rule(device: torch.device) -> None:
    print("\n# 1. A computational graph and the chain rule")
    # e = c * d with c = a + b + 1 and d = b + 2. Every operation on a tensor that requires
    # grad adds a node to a graph; `backward()` walks it from e back to the leaves a and b.
    a = torch.tensor(1.0, requires_grad=True, device=device)
    b = torch.tensor(1.0, requires_grad=True, device=device)
    c = a + b + 1
    d = b + 2
    e = c * d
    check("e at a = b = 1", e.item(), 9.0)
    show("e.grad_fn (the last node of the graph)", type(e.grad_fn).__name__)
    show("a is a leaf, c is not", (a.is_leaf, c.is_leaf))

    # By hand: de/dc = d, de/dd = c; dc/da = 1, dc/db = 1, dd/db = 1.
    # de/da = de/dc * dc/da = d;  de/db = de/dc * dc/db + de/dd * dd/db = d + c
    by_hand_a, by_hand_b = d.item(), d.item() + c.item()
    e.backward()
    check("de/da by hand", by_hand_a, 3.0)
    check("de/da from autograd", a.grad.item(), 3.0)
    check("de/db by hand (two paths add up)", by_hand_b, 6.0)
    check("de/db from autograd", b.grad.item(), 6.0)


# %% 2. requires_grad, backward, .grad
def gradients(device: torch.device) -> None:
    print("\n# 2. requires_grad, backward() and .grad")
    x = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], requires_grad=True, device=device)
    z = x.pow(2).sum()  # a scalar, so backward() needs no argument
    z.backward()
    check("x = [[1, 0], [-1, 1]], z = sum(x^2): x.grad = 2x", x.grad, [[2.0, 0.0], [-2.0, 2.0]])

    # A one-layer logistic model: z = x @ w + b, loss = binary cross-entropy on the logits.
    x = torch.ones(5, device=device)  # input: data, so no gradient needed
    y = torch.zeros(3, device=device)  # expected output
    w = torch.randn(5, 3, requires_grad=True, device=device)  # parameters: we want gradients
    b = torch.randn(3, requires_grad=True, device=device)
    loss = F.binary_cross_entropy_with_logits(x @ w + b, y)
    show("loss.grad_fn", type(loss.grad_fn).__name__)
    loss.backward()
    check("logistic model: w.grad.shape", list(w.grad.shape), [5, 3])
    check("logistic model: b.grad.shape", list(b.grad.shape), [3])
    show("x.grad (x did not ask for one)", x.grad)


# %% 3. Turning tracking off
def no_tracking(device: torch.device) -> None:
    print("\n# 3. Turning gradient tracking off")
    w = torch.randn(5, 3, requires_grad=True, device=device)
    x = torch.ones(5, device=device)
    check("(x @ w).requires_grad", (x @ w).requires_grad, True)
    # Inside no_grad nothing is recorded: use it for evaluation and for updating parameters.
    with torch.no_grad():
        check("(x @ w).requires_grad inside torch.no_grad()", (x @ w).requires_grad, False)
    # detach() gives a tensor outside the graph that shares the same memory.
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    detached = x.detach()
    check("x.detach().requires_grad", detached.requires_grad, False)
    detached[0] = 100.0  # writing into the detached tensor writes into x as well
    check("x after detached[0] = 100 (shared storage)", x, [100.0, 2.0, 3.0])
    print("  Use .detach().clone() when you need an independent copy.")


# %% 4. detach inside a graph
def detach_in_graph(device: torch.device) -> None:
    print("\n# 4. detach() inside a graph: cutting a path")
    x = torch.tensor([1.0, 2.0, 3.5], requires_grad=True, device=device)
    y = x**2
    y.sum().backward()
    check("x = [1, 2, 3.5], y = x^2, y.sum().backward(): x.grad = 2x", x.grad, [2.0, 4.0, 7.0])

    x.grad.zero_()  # start afresh (see section 5 for why this is needed)
    y = x**2
    t = y.detach() + x**3  # y.detach() is a constant to autograd: only x^3 sends gradient back
    t.sum().backward()
    check("t = y.detach() + x^3: x.grad = 3x^2 (not 2x + 3x^2)", x.grad, [3.0, 12.0, 36.75])


# %% 5. Vector-Jacobian products, accumulation and zeroing
def vector_jacobian(device: torch.device) -> None:
    print("\n# 5. Vector-Jacobian products; gradients accumulate")
    # For a non-scalar output, backward(v) computes v^T J (J: the Jacobian of out w.r.t. inp)
    # without ever building J. With v = ones it is the gradient of out.sum().
    inp = torch.eye(4, 5, requires_grad=True, device=device)
    out = (inp + 1).pow(2).t()
    out.backward(torch.ones_like(out), retain_graph=True)  # keep the graph for a second call
    show("first backward: inp.grad = 2 (inp + 1)", inp.grad)
    check("first backward: [diagonal], [elsewhere]", diagonal_and_rest(inp.grad), [[4.0], [2.0]])

    out.backward(torch.ones_like(out), retain_graph=True)  # .grad is ADDED to, not replaced
    check("second backward (accumulated)", diagonal_and_rest(inp.grad), [[8.0], [4.0]])

    inp.grad.zero_()
    out.backward(torch.ones_like(out), retain_graph=True)
    check("after inp.grad.zero_() and backward", diagonal_and_rest(inp.grad), [[4.0], [2.0]])


# %% 6. backward() on a non-scalar
def non_scalar_backward(device: torch.device) -> None:
    print("\n# 6. backward() on a non-scalar output")
    x = torch.tensor([1.0, 2.0], requires_grad=True, device=device)
    y = x**2
    try:
        y.backward()  # y has two elements: which direction should the gradient be taken in?
        message = "no error"
    except RuntimeError as error:
        message = str(error).splitlines()[0]
    show("y = x^2; y.backward() raises RuntimeError", message)
    expected = "grad can be implicitly created only for scalar outputs"
    check(f"the error says '{expected}'", expected in message, True)
    # Fix 1: give the vector v of the vector-Jacobian product: grad = v * dy/dx = v * 2x.
    y.backward(torch.tensor([1.0, 2.0], device=device))
    check("fix 1: y.backward(tensor([1., 2.])): x.grad", x.grad, [2.0, 8.0])
    # Fix 2: reduce to a scalar first (the usual case: a loss is a mean or a sum).
    x.grad = None
    (x**2).sum().backward()
    check("fix 2: (x^2).sum().backward(): x.grad", x.grad, [2.0, 4.0])


# %% 7. Where gradients live, and why optimizers zero them
def zero_grad_in_training(device: torch.device) -> None:
    print("\n# 7. Gradients live in the parameters; optimizer.zero_grad()")
    model = nn.Linear(3, 1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = torch.ones(4, 3, device=device)
    show("before any backward: model.weight.grad", model.weight.grad)

    loss = model(inputs).pow(2).mean()
    loss.backward()
    first = model.weight.grad.clone()
    show("after one backward: model.weight.grad", first)

    model(inputs).pow(2).mean().backward()  # a second batch without zeroing...
    doubled = torch.allclose(model.weight.grad, 2 * first)
    check("...a second backward without zeroing doubles the gradient", doubled, True)
    # The optimizer holds references to the same parameter tensors and reads their .grad in
    # step(); zero_grad() clears them so each step uses only the current batch.
    optimizer.zero_grad()
    cleared = model.weight.grad is None or bool((model.weight.grad == 0).all())
    check("after optimizer.zero_grad() the gradient is cleared", cleared, True)
    same = optimizer.param_groups[0]["params"][0] is model.weight
    check("the optimizer holds the model's own parameter tensors", same, True)


# %% main
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON)
    references.clear()
    chain_rule(args.device)
    gradients(args.device)
    no_tracking(args.device)
    detach_in_graph(args.device)
    vector_jacobian(args.device)
    non_scalar_backward(args.device)
    zero_grad_in_training(args.device)

    metrics = {
        **references.metrics(),
    }
    write_metrics(args.out, metrics, headline="reference_values")
    return metrics


if __name__ == "__main__":
    main()
