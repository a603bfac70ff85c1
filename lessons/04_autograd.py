"""Autograd: how PyTorch records a computation and computes its gradients for you.

What you will learn
  - a computational graph and the chain rule, done by hand and checked against autograd
  - `requires_grad`, `backward()` and `.grad`; gradients of a small logistic model
  - switching tracking off: `torch.no_grad()` and `detach()` (which shares memory)
  - `detach()` inside a graph: cutting one path of the gradient on purpose
  - vector-Jacobian products: `backward(v)`, gradients that accumulate, `grad.zero_()`
  - why `backward()` on a non-scalar fails, and the two ways to fix it
  - where gradients live, and why every training loop calls `optimizer.zero_grad()`

How to run
    python lessons/04_autograd.py              # the whole lesson
    python lessons/04_autograd.py --device cuda
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~4 s, full ~4 s on a 2-core CPU (--quick runs the same lesson).
"""

# %%
import torch
import torch.nn.functional as F
from torch import nn

from common.cli import lesson_args
from common.report import write_metrics


def show(values: dict) -> None:
    """Print a section's results, one `label: value` line each."""
    for label, value in values.items():
        print(f"{label}: {value}")


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="04_autograd")
    device = args.device

# %% [markdown]
# ## 1. A computational graph and the chain rule
# Take $e = c \cdot d$ with $c = a + b + 1$ and $d = b + 2$, at $a = b = 1$: $c = 3$, $d = 3$,
# $e = 9$. The chain rule multiplies the local derivatives along each path from $e$ back to a
# leaf and adds the paths up:
# $\frac{\partial e}{\partial a} = \frac{\partial e}{\partial c}\frac{\partial c}{\partial a}
# = d \cdot 1 = 3$ and $\frac{\partial e}{\partial b} = \frac{\partial e}{\partial c}
# \frac{\partial c}{\partial b} + \frac{\partial e}{\partial d}\frac{\partial d}{\partial b}
# = d + c = 6$. Every operation on a tensor with `requires_grad=True` adds a node to a graph;
# `e.backward()` walks that graph backwards and does exactly this sum for us.


# %%
def chain_rule() -> dict:
    """e = (a + b + 1)(b + 2) at a = b = 1: the value and both gradients, by hand and autograd."""
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    c = a + b + 1
    d = b + 2
    e = c * d
    by_hand_a, by_hand_b = d.item(), d.item() + c.item()  # de/da = d; de/db = d + c
    e.backward()
    return {
        "e at a = b = 1": e.item(),
        "e.grad_fn (the last node of the graph)": type(e.grad_fn).__name__,
        "a.is_leaf, c.is_leaf": (a.is_leaf, c.is_leaf),
        "de/da by hand": by_hand_a,
        "de/da from autograd": a.grad.item(),
        "de/db by hand (two paths add up)": by_hand_b,
        "de/db from autograd": b.grad.item(),
    }


if __name__ == "__main__":
    chained = chain_rule()
    show(chained)

# %% [markdown]
# ## 2. `requires_grad`, `backward()` and `.grad`
# Mark the tensors you want gradients for with `requires_grad=True`; call `backward()` on a
# scalar result; each marked leaf then holds $\partial z / \partial x$ in `x.grad`. For
# $z = \sum_{ij} x_{ij}^2$ that is $2x$. In a model the marked tensors are the parameters
# $w, b$: for a logistic layer with loss $L(xw + b, y)$, `w.grad` has the shape of `w`.
# Data tensors (`x`, `y`) need no gradient, and theirs stays `None`.


# %%
def gradients() -> dict:
    """The gradient of sum(x^2), and the gradient shapes of a one-layer logistic model."""
    x = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], requires_grad=True)
    x.pow(2).sum().backward()
    values = {"x = [[1, 0], [-1, 1]], z = sum(x^2): x.grad = 2x": x.grad.tolist()}
    inputs, target = torch.ones(5), torch.zeros(3)  # data: no gradient needed
    w = torch.randn(5, 3, requires_grad=True)  # parameters: we want gradients
    b = torch.randn(3, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(inputs @ w + b, target)
    loss.backward()
    values["loss.grad_fn"] = type(loss.grad_fn).__name__
    values["logistic model: w.grad.shape"] = list(w.grad.shape)
    values["logistic model: b.grad.shape"] = list(b.grad.shape)
    values["inputs.grad (the data asked for none)"] = inputs.grad
    return values


if __name__ == "__main__":
    graded = gradients()
    show(graded)

# %% [markdown]
# ## 3. Turning tracking off
# Recording a graph costs memory and time. Inside `with torch.no_grad():` nothing is recorded:
# use it to evaluate a model and to update parameters by hand. `x.detach()` returns a tensor
# outside the graph that **shares** `x`'s memory: writing into it writes into `x`. Use
# `x.detach().clone()` for an independent copy.


# %%
def no_tracking() -> dict:
    """requires_grad with and without no_grad(); detach() shares storage."""
    w = torch.randn(5, 3, requires_grad=True)
    x = torch.ones(5)
    values = {"(x @ w).requires_grad": (x @ w).requires_grad}
    with torch.no_grad():
        values["(x @ w).requires_grad inside torch.no_grad()"] = (x @ w).requires_grad
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    detached = x.detach()
    values["x.detach().requires_grad"] = detached.requires_grad
    # The notes compare id(x.untyped_storage()) of the two; data_ptr(), the address of the
    # numbers, is the reliable test (a storage wrapper's id can be reused).
    values["same memory (data_ptr)"] = detached.data_ptr() == x.data_ptr()
    detached[0] = 100.0
    values["x after detached[0] = 100 (shared storage)"] = x.tolist()
    return values


if __name__ == "__main__":
    untracked = no_tracking()
    show(untracked)

# %% [markdown]
# ## 4. `detach()` inside a graph: cutting a path
# With $y = x^2$, `y.sum().backward()` gives $2x$. Now build $t = \text{detach}(y) + x^3$: the
# value of $t$ still contains $x^2$, but to autograd the detached part is a constant, so only
# $x^3$ sends a gradient back and `x.grad` is $3x^2$, not $2x + 3x^2$. This is how a network
# stops gradients flowing into a part it must not change.


# %%
def detach_in_graph() -> dict:
    """x = [1, 2, 3.5]: the gradient of sum(x^2), then of sum(detach(x^2) + x^3)."""
    x = torch.tensor([1.0, 2.0, 3.5], requires_grad=True)
    y = x**2
    y.sum().backward()
    values = {"x = [1, 2, 3.5], y = x^2, y.sum().backward(): x.grad = 2x": x.grad.tolist()}
    x.grad.zero_()  # start afresh (section 5 shows why this is needed)
    t = y.detach() + x**3  # y.detach() is a constant to autograd
    t.sum().backward()
    values["t = y.detach() + x^3: x.grad = 3x^2 (not 2x + 3x^2)"] = x.grad.tolist()
    return values


if __name__ == "__main__":
    cut = detach_in_graph()
    show(cut)

# %% [markdown]
# ## 5. Vector-Jacobian products; gradients accumulate
# For a non-scalar output, `out.backward(v)` computes $v^\top J$, where $J$ is the Jacobian of
# `out` with respect to the input, without ever building $J$. With $v$ all ones that is the
# gradient of `out.sum()`: for `out = (inp + 1)^2` it is $2(\text{inp} + 1)$, so 4 on the
# diagonal of `inp = eye(4, 5)` and 2 elsewhere. A second `backward` **adds** to `.grad`
# (8 and 4) instead of replacing it, until `inp.grad.zero_()` clears it.
# `retain_graph=True` keeps the graph for another `backward` call.


# %%
def diagonal_and_rest(grad: torch.Tensor) -> list[list[float]]:
    """The distinct values on the diagonal of `grad`, and those off it."""
    on_diagonal = torch.eye(*grad.shape, dtype=torch.bool)
    return [grad[on_diagonal].unique().tolist(), grad[~on_diagonal].unique().tolist()]


def vector_jacobian() -> dict:
    """backward(ones) three times on out = (eye(4, 5) + 1)^2 transposed, zeroing before the last."""
    inp = torch.eye(4, 5, requires_grad=True)
    out = (inp + 1).pow(2).t()
    out.backward(torch.ones_like(out), retain_graph=True)
    values = {"first backward: inp.grad = 2 (inp + 1)": inp.grad.tolist()}
    values["first backward: [diagonal], [elsewhere]"] = diagonal_and_rest(inp.grad)
    out.backward(torch.ones_like(out), retain_graph=True)
    values["second backward (accumulated)"] = diagonal_and_rest(inp.grad)
    inp.grad.zero_()
    out.backward(torch.ones_like(out), retain_graph=True)
    values["after inp.grad.zero_() and backward"] = diagonal_and_rest(inp.grad)
    return values


if __name__ == "__main__":
    products = vector_jacobian()
    show(products)

# %% [markdown]
# ## 6. `backward()` on a non-scalar output
# A gradient is the derivative of **one** number. For $y = x^2$ with two elements, `y.backward()`
# cannot know how to weigh them and raises an error. Either give the weights, `y.backward(v)`,
# which yields $v \cdot 2x$ (the product of section 5), or reduce `y` to a scalar first, as a
# loss always is (a mean or a sum).


# %%
def non_scalar_backward() -> dict:
    """The error of y.backward() for a vector y, and its two fixes, with x = [1, 2]."""
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x**2
    try:
        y.backward()
        message = "no error"
    except RuntimeError as error:
        message = str(error).splitlines()[0]
    expected = "grad can be implicitly created only for scalar outputs"
    values = {"y = x^2; y.backward() raises RuntimeError": message}
    values[f"the error says '{expected}'"] = expected in message
    y.backward(torch.tensor([1.0, 2.0]))  # fix 1: v = [1, 2], so x.grad = v * 2x
    values["fix 1: y.backward(tensor([1., 2.])): x.grad"] = x.grad.tolist()
    x.grad = None
    (x**2).sum().backward()  # fix 2: a scalar
    values["fix 2: (x^2).sum().backward(): x.grad"] = x.grad.tolist()
    return values


if __name__ == "__main__":
    non_scalar = non_scalar_backward()
    show(non_scalar)

# %% [markdown]
# ## 7. Gradients live in the parameters
# `model.weight` is a tensor with `requires_grad=True`; `backward()` stores its gradient in
# `model.weight.grad`. The optimizer holds references to these very tensors and reads their
# `.grad` in `step()`. Because `backward()` adds, two half-batches, each with half the loss,
# leave the same gradient as the full batch: accumulation on purpose, for batches too big to fit.


# %%
def gradients_in_parameters(device="cpu") -> dict:
    """Where .grad lives, what a second backward does to it, and what zero_grad() does."""
    model = nn.Linear(3, 1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = torch.randn(4, 3).to(device)
    values = {"before any backward: model.weight.grad": model.weight.grad}
    model(inputs).pow(2).mean().backward()
    full_batch = model.weight.grad.clone()
    values["after one backward: model.weight.grad"] = [round(g, 4) for g in full_batch[0].tolist()]
    model(inputs).pow(2).mean().backward()  # a second backward, no zeroing in between
    doubled = torch.allclose(model.weight.grad, 2 * full_batch)
    values["...a second backward without zeroing doubles the gradient"] = doubled
    optimizer.zero_grad()
    cleared = model.weight.grad is None or bool((model.weight.grad == 0).all())
    values["after optimizer.zero_grad() the gradient is cleared"] = cleared
    for half in (inputs[:2], inputs[2:]):
        (model(half).pow(2).mean() / 2).backward()
    values["two half-batches, loss / 2 each, add up to the full batch's gradient"] = (
        torch.allclose(model.weight.grad, full_batch)
    )  # fmt: skip
    same = optimizer.param_groups[0]["params"][0] is model.weight
    values["the optimizer holds the model's own parameter tensors"] = same
    return values


if __name__ == "__main__":
    in_parameters = gradients_in_parameters(device)
    show(in_parameters)

# %% [markdown]
# ## 8. Why every training loop calls `optimizer.zero_grad()`
# The loop below fits the line $y = 2x + 1$ with SGD: $w \leftarrow w - \eta\, \partial L /
# \partial w$. With `optimizer.zero_grad()` each step uses the gradient of the current loss and
# the loss falls steadily. Without it, every step adds the gradients of *all* earlier steps: the
# steps keep overshooting and the loss swings up and down instead of settling.


# %%
def fit_line(device="cpu", zero_grad: bool = True, steps: int = 20, lr: float = 0.2) -> list:
    """Fit y = 2x + 1 from w = b = 0; returns the loss of every step."""
    X = torch.linspace(-1, 1, 16).unsqueeze(1)
    y = 2 * X + 1
    X, y = X.to(device), y.to(device)
    model = nn.Linear(1, 1).to(device)
    with torch.no_grad():  # the same start every time
        model.weight.zero_()
        model.bias.zero_()
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(X), y)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


if __name__ == "__main__":
    loss_history = fit_line(device)
    forgetful = fit_line(device, zero_grad=False)
    print(f"losses with zero_grad(): {[round(loss, 3) for loss in loss_history]}")
    print(f"losses without it:       {[round(loss, 3) for loss in forgetful]}")

# %% [markdown]
# ## Summary
# Everything the lesson printed, section by section, goes into `metrics.json`, with the two
# loss curves of section 8.

# %%
if __name__ == "__main__":
    sections = {
        "chain_rule": chained,
        "gradients": graded,
        "no_tracking": untracked,
        "detach_in_graph": cut,
        "vector_jacobian": products,
        "non_scalar_backward": non_scalar,
        "gradients_in_parameters": in_parameters,
    }
    metrics = {
        "values_shown": sum(len(values) for values in sections.values()),
        **sections,
        "loss_history": loss_history,
        "losses_without_zero_grad": forgetful,
    }
    print(f"{metrics['values_shown']} values shown in {len(sections)} sections; final loss "
          f"{loss_history[-1]:.4f} with zero_grad(), {forgetful[-1]:.4f} without")  # fmt: skip
    write_metrics(args.out, metrics, headline="values_shown")
