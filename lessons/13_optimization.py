"""Optimization in practice: capacity, regularization, saddle points, optimizers, schedules.

What you will learn
  - model bias vs overfitting on models of growing capacity; early stopping, weight decay, dropout
  - why "a constant plus a sum of sigmoids (or ReLUs)" fits any curve; a saddle and its Hessian
  - small vs large batches (FashionMNIST); SGD, momentum, Adagrad, RMSProp and Adam side by side
  - learning-rate schedules (step, exponential, warm-up then decay) and gradient clipping

How to run
    python lessons/13_optimization.py                     # everything
    python lessons/13_optimization.py --quick             # fewer steps, a few seconds

Time: --quick ~6 s, full ~20 s on a 2-core CPU.
"""

# %%
import copy
import time
import warnings

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.cli import lesson_args
from common.data import vision_dataset
from common.report import save_figure, write_metrics

if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    # threads=1: these models are tiny, and more CPU threads would only add overhead.
    args = lesson_args(__doc__, name="13_optimization", epochs=3, threads=1)
    device = args.device
    steps = 100 if args.quick else 1000  # full-batch steps on the synthetic curves
    results = {}  # what each section measured, for metrics.json

# %% [markdown]
# ## 1. Model bias, overfitting, and three cures
# Thirty noisy samples of $\sin(1.5x) + 0.3x$ to train on, 300 to validate on. A straight line
# cannot bend (**model bias**: both losses stay high); a big MLP can pass through every training
# point, noise included (**overfitting**: training loss far below validation loss). The cures:
# **early stopping** keeps the weights of the best validation epoch; **weight decay** shrinks
# each weight every step, $w \leftarrow w - \text{lr}\,\lambda\,w$; **dropout** zeroes a random
# share of activations in `model.train()` mode, none in `model.eval()`. `fit` is the training
# loop of every experiment here; with 30 points a step uses all of them (a one-batch "loader").


# %%
def fit(model, optimizer, loader, val, *, epochs, loss_fn=F.mse_loss, patience=None, device="cpu"):
    """Train, scoring `val` after each epoch; returns per-epoch train/val losses (and accuracy for
    labels). `patience`: stop after that many epochs without a better val loss, keep the best."""
    x_val, y_val = (tensor.to(device) for tensor in val)
    history = {"train": [], "val": [], "accuracy": []}
    best, best_state, since_best = float("inf"), None, 0
    for _ in range(epochs):
        model.train()  # dropout on
        total = rows = 0
        for X, y in loader:
            X, y = X.to(device), y.to(device)
            loss = loss_fn(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, rows = total + loss.item() * len(X), rows + len(X)
        model.eval()  # dropout off
        with torch.no_grad():
            out = model(x_val)
        history["train"].append(total / rows)
        history["val"].append(val_loss := loss_fn(out, y_val).item())
        if y_val.dtype == torch.long:  # class labels
            history["accuracy"].append((out.argmax(1) == y_val).float().mean().item())
        if patience is not None:
            if val_loss < best:
                best, best_state, since_best = val_loss, copy.deepcopy(model.state_dict()), 0
            elif (since_best := since_best + 1) >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def mlp(inputs, hidden, outputs, dropout=0.0):
    """Two hidden ReLU layers, each followed by dropout (none when `dropout=0`)."""
    layers = [nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(dropout)]
    layers += [nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers, nn.Linear(hidden, outputs))


if __name__ == "__main__":
    x = torch.rand(330, 1) * 6 - 3  # 330 noisy samples of sin(1.5x) + 0.3x on [-3, 3]
    y = torch.sin(1.5 * x) + 0.3 * x + 0.3 * torch.randn_like(x)
    train, val = (x[:30], y[:30]), (x[30:], y[30:])
    small = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    runs = [  # (name, model, weight decay, early-stopping patience)
        ("linear (model bias)", nn.Linear(1, 1), 0.0, None),
        ("small MLP, 8 tanh units", small, 0.0, None),
        ("big MLP, 2x96 (overfits)", mlp(1, 96, 1), 0.0, None),
        ("big + early stopping", mlp(1, 96, 1), 0.0, steps // 10),
        ("big + weight decay 1.0", mlp(1, 96, 1), 1.0, None),
        ("big + dropout 0.3", mlp(1, 96, 1, dropout=0.3), 0.0, None),
    ]  # fmt: skip
    capacity, (fig, ax) = {}, plt.subplots(figsize=(8, 4.5))
    print(f"{'model':<26} {'train loss':>10} {'val loss':>9} {'best val (step)':>16}")
    for (name, model, decay, patience), color in zip(runs, plt.cm.tab10.colors):
        # AdamW applies weight decay directly to the weights: w <- w - lr * decay * w
        opt = torch.optim.AdamW(model.to(device).parameters(), lr=3e-3, weight_decay=decay)
        history = fit(model, opt, [train], val, epochs=steps, patience=patience, device=device)
        with torch.no_grad():  # the final weights' losses (the best ones if stopped early)
            t_loss, v_loss = (F.mse_loss(model(a.to(device)), b.to(device)).item()
                              for a, b in (train, val))  # fmt: skip
        best = min(history["val"])
        capacity[name] = {"train": t_loss, "val": v_loss, "best_val": best}
        print(f"{name:<26} {t_loss:>10.3f} {v_loss:>9.3f} {best:>9.3f} "
              f"({history['val'].index(best):>4})")  # fmt: skip
        ax.plot(history["train"], color=color, ls="--", lw=1)
        ax.plot(history["val"], color=color, label=name)
        if patience:
            early_stopping_history = history["train"]
    ax.set(xlabel="step", ylabel="MSE (dashed: train, solid: validation)", yscale="log")
    ax.legend(fontsize=8)
    save_figure(fig, args.out / "capacity_curves.png")
    print("Linear: both high (model bias); big MLP: train << val (overfitting); cures help.")
    results |= {"best_val_loss_early_stopping": capacity["big + early stopping"]["val"],
                "loss_history": early_stopping_history, "capacity": capacity}  # fmt: skip

# %% [markdown]
# ## 2. A constant plus a sum of sigmoids (or ReLUs) fits any curve
# A piecewise-linear curve is a constant plus one "hard sigmoid" per bend, and a hard sigmoid is
# the difference of two ReLUs. So $y = b + \sum_i c_i\,\sigma(w_i x + b_i)$, which is exactly
# `Linear -> activation -> Linear`, fits the curve better the more pieces (hidden units) it has:
# one piece cannot follow three bends.


# %%
def hard_sigmoid(x, start, end, height):
    """0 before `start`, rising linearly to `height` at `end`: the difference of two ReLUs."""
    return height * (F.relu(x - start) - F.relu(x - end)) / (end - start)


if __name__ == "__main__":
    x = torch.linspace(-3, 3, 200).unsqueeze(1)  # a curve with three bends:
    target = 1.0 + hard_sigmoid(x, -2.5, -1.5, -0.8) + hard_sigmoid(x, -0.5, 0.5, 1.5)
    target = target + hard_sigmoid(x, 1.5, 2.5, -1.0)  # a constant plus three hard sigmoids
    gap = (hard_sigmoid(x, -0.5, 0.5, 1.5) - 1.5 * (x + 0.5).clamp(0, 1)).abs().max().item()
    print(f"two ReLUs vs a clamped line (hard sigmoid): max difference {gap:.1e}")
    errors, (fig, ax) = {}, plt.subplots(figsize=(7, 4))
    ax.plot(x, target, "k", lw=3, label="target")
    for units in (1, 4, 16):
        for act in (nn.Sigmoid, nn.ReLU):
            torch.manual_seed(args.seed)  # every model starts from the same random state
            model = nn.Sequential(nn.Linear(1, units), act(), nn.Linear(units, 1)).to(device)
            opt, name = torch.optim.Adam(model.parameters(), lr=0.1), f"{units} {act.__name__}"
            errors[name] = fit(model, opt, [(x, target)], (x, target), epochs=steps,
                               device=device)["val"][-1]  # fmt: skip
            print(f"{name:<12} MSE {errors[name]:.4f}")
            if units == 16:
                ax.plot(x, model(x.to(device)).detach().cpu(), label=f"sum of {name}s")
    ax.legend()
    save_figure(fig, args.out / "sum_of_pieces.png")
    results |= {"pieces_mse": errors, "hard_sigmoid_gap": gap}

# %% [markdown]
# ## 3. Critical points: a saddle
# With one sample $(x, y) = (1, 1)$ the loss $L(w_1, w_2) = (1 - w_1 w_2 x)^2$ has zero gradient
# at $(0, 0)$: gradient descent cannot move. The Hessian $H$ (second derivatives) has eigenvalues
# of both signs there, so it is a saddle; and as $L(\theta + u) \approx L(\theta) + \frac{1}{2}
# u^T H u$, a step along an eigenvector $u$ with a negative eigenvalue lowers the loss.


# %%
def saddle_loss(w, x=1.0, y=1.0):
    return (y - w[0] * w[1] * x) ** 2


def saddle() -> dict:
    """Gradient, Hessian, eigenvalues at (0, 0), and the loss half a step along each eigenvector."""
    w = torch.zeros(2, requires_grad=True)
    (grad,) = torch.autograd.grad(saddle_loss(w), w)
    hessian = torch.autograd.functional.hessian(saddle_loss, w.detach())
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)  # ascending; columns are vectors
    escape = eigenvectors[:, 0] * torch.sign(eigenvectors[0, 0])  # the eigenvector of -2
    along_u, along_v = (saddle_loss(0.5 * u).item() for u in (escape, eigenvectors[:, 1]))
    return {"gradient": grad.tolist(), "hessian": hessian.tolist(),
            "eigenvalues": eigenvalues.tolist(), "escape_direction": escape.tolist(),
            "loss_along_escape": along_u, "loss_along_other": along_v}  # fmt: skip


if __name__ == "__main__":
    critical = saddle()
    print(f"gradient at (0, 0): {critical['gradient']} -> a critical point")
    print(f"Hessian: {critical['hessian']}, eigenvalues: {critical['eigenvalues']} -> a saddle")
    escape = [round(v, 4) for v in critical["escape_direction"]]
    print(f"eigenvector of -2: {escape} (proportional to [1, 1])")
    print(f"L(0.5 u) = {critical['loss_along_escape']:.4f} < L(0, 0) = 1 < L(0.5 v) = "
          f"{critical['loss_along_other']:.4f}: along u the loss goes downhill")  # fmt: skip
    results |= critical

# %% [markdown]
# ## 4. Small vs large batches, on FashionMNIST
# An epoch sees every image once. Small batches make many small, noisy updates per epoch; large
# batches make few smooth ones and spend less time per image. With the same learning rate and
# number of epochs, the many updates usually win. This section and the next train eight MLPs on
# the same images, so instead of decoding each image through a transform every epoch (lesson
# 03's way), a split's uint8 tensor `dataset.data` becomes floats **once**, 784 per image,
# standardized with the training images' mean and std (lesson 07), and a `TensorDataset` over
# them feeds the `DataLoader`s. The validation images come from the test split.


# %%
def fashion_tensors(args, train: bool, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` images of a split as (n x 784 floats in [0, 1], labels)."""
    dataset = vision_dataset("FashionMNIST", args, train=train)
    return dataset.data[:n].flatten(1).float() / 255, torch.as_tensor(dataset.targets[:n])


if __name__ == "__main__":
    n_train, n_val = (800, 400) if args.quick else (10000, 2000)
    fashion_train = fashion_tensors(args, train=True, n=n_train)
    fashion_val = fashion_tensors(args, train=False, n=n_val)
    mean, std = fashion_train[0].mean(), fashion_train[0].std()
    for images, _ in (fashion_train, fashion_val):
        images.sub_(mean).div_(std)  # standardized with the training images' statistics
    print(f"FashionMNIST: {n_train} training, {n_val} validation images; {args.epochs} epochs")
    batches = {}
    for batch_size in (16, 128, 1024):
        torch.manual_seed(args.seed)
        model = mlp(784, 128, 10).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = DataLoader(TensorDataset(*fashion_train), batch_size, shuffle=True)
        started = time.perf_counter()  # loss.item() waits for the device: the clock is fair
        history = fit(model, opt, loader, fashion_val, epochs=args.epochs,
                      loss_fn=F.cross_entropy, device=device)  # fmt: skip
        seconds = (time.perf_counter() - started) / args.epochs
        accuracy = history["accuracy"][-1]
        batches[batch_size] = {"epoch_s": seconds, "val_accuracy": accuracy}
        print(f"SGD, batch {batch_size:>4}: {len(loader):>4} updates per epoch, "
              f"{seconds:.2f} s per epoch, val accuracy {accuracy:.3f}")  # fmt: skip
    results |= {"batch_size": batches}

# %% [markdown]
# ## 5. Optimizers: on one surface, then on one network
# On the valley $0.02\,w_1^2 + 2\,w_2^2$, 100 times steeper along $w_2$ than along $w_1$, plain
# SGD's learning rate is capped by the steep direction, so it crawls along the shallow one. The
# adaptive methods scale each parameter's step by its own gradient history.


# %%
# Update rules (g = gradient, lr = learning rate, all per parameter):
#   SGD:      w -= lr * g
#   momentum: m = beta * m + g;           w -= lr * m            (keeps rolling like a ball)
#   Adagrad:  s += g^2;                   w -= lr * g / sqrt(s)  (s sums every squared gradient,
#             so the factor lr / sqrt(s) only shrinks; the step lr * g / sqrt(s) need not)
#   RMSProp:  s = a * s + (1 - a) * g^2;  w -= lr * g / sqrt(s)  (forgets old gradients)
#   Adam:     momentum m and RMSProp s together (bias-corrected): w -= lr * m / sqrt(s)
OPTIMIZERS = {  # name: (class, options, lr on the surface, lr on the network)
    "SGD": (torch.optim.SGD, {}, 0.45, 0.1),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}, 0.05, 0.02),
    "Adagrad": (torch.optim.Adagrad, {}, 0.5, 0.05),
    "RMSProp": (torch.optim.RMSprop, {}, 0.05, 1e-3),
    "Adam": (torch.optim.Adam, {}, 0.2, 1e-3),
}


def valley(w):
    """An elongated bowl, 100x steeper along w2 than along w1; minimum 0 at (0, 0)."""
    return 0.02 * w[..., 0] ** 2 + 2.0 * w[..., 1] ** 2


if __name__ == "__main__":
    w1, w2 = torch.meshgrid(torch.linspace(-5, 1, 99), torch.linspace(-2, 2, 99), indexing="xy")
    surface, (fig, ax) = {}, plt.subplots(figsize=(8, 5))
    ax.contour(w1, w2, valley(torch.stack([w1, w2], -1)), levels=20, cmap="Greys")
    for name, (kind, options, lr, _) in OPTIMIZERS.items():
        w = torch.tensor([-4.5, 1.5], requires_grad=True)  # 50 steps down from here
        opt, path = kind([w], lr=lr, **options), [w.tolist()]
        for _ in range(50):
            opt.zero_grad()
            valley(w).backward()
            opt.step()
            path.append(w.tolist())
        surface[name] = valley(w).item()
        ax.plot(*zip(*path), marker=".", ms=3, label=f"{name}: final loss {surface[name]:.4f}")
        print(f"valley, 50 steps: {name:<9} final loss {surface[name]:.4f}")
    ax.set(xlabel="w1", ylabel="w2", title="optimizer trajectories")
    ax.legend(fontsize=8)
    save_figure(fig, args.out / "optimizer_trajectories.png")
    torch.manual_seed(args.seed)
    initial, network = mlp(784, 128, 10).to(device), {}  # every optimizer starts from here
    loader = DataLoader(TensorDataset(*fashion_train), args.batch_size, shuffle=True)
    for name, (kind, options, _, lr) in OPTIMIZERS.items():
        model = copy.deepcopy(initial)
        history = fit(model, kind(model.parameters(), lr=lr, **options), loader, fashion_val,
                      epochs=args.epochs, loss_fn=F.cross_entropy, device=device)  # fmt: skip
        loss, accuracy = history["train"][-1], history["accuracy"][-1]
        network[name] = {"train_loss": loss, "val_accuracy": accuracy}
        print(f"{name:<9} on the MLP: train loss {loss:.3f}, val accuracy {accuracy:.3f}")
    results |= {"optimizer_surface_loss": surface, "optimizer_network": network}

# %% [markdown]
# ## 6. Controlling the step: learning-rate schedules and gradient clipping
# Large steps early, small steps late: a scheduler changes the learning rate at each
# `scheduler.step()`; a warm-up starts small while the first gradients (and Adam's averages of
# them) are unreliable. `clip_grad_norm_`, between `loss.backward()` and `optimizer.step()`,
# rescales all gradients together to a total norm of at most `max_norm` (same direction).


# %%
def schedules(steps: int = 60) -> dict[str, list[float]]:
    """The learning rate before every step under three schedules (base lr 0.1)."""
    S = torch.optim.lr_scheduler
    makers = {
        "step (x0.5 every 20)": lambda o: S.StepLR(o, step_size=20, gamma=0.5),
        "exponential (x0.95)": lambda o: S.ExponentialLR(o, gamma=0.95),
        # warm-up: lr grows linearly from 0.01 to 0.1 over 10 steps, then decays
        "warm-up 10, then x0.95": lambda o: S.SequentialLR(
            o, [S.LinearLR(o, start_factor=0.1, total_iters=10), S.ExponentialLR(o, gamma=0.95)],
            milestones=[10]),
    }  # fmt: skip
    lrs = {}
    for name, make in makers.items():
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler, lrs[name] = make(optimizer), []
        for _ in range(steps):
            lrs[name].append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # (a real loop trains here)
            with warnings.catch_warnings():  # torch < 2.4 warns spuriously inside SequentialLR
                warnings.filterwarnings("ignore", "The epoch parameter", UserWarning)
                scheduler.step()  # once per step here; many recipes step once per epoch
    return lrs


def clipping(seed: int = 0, max_norm: float = 1.0) -> tuple[float, float]:
    """Total gradient norm of an MLP on far-off targets, before and after clipping."""
    torch.manual_seed(seed)
    model, x = mlp(1, 32, 1), torch.linspace(-3, 3, 64).unsqueeze(1)
    F.mse_loss(model(x), 100 * x).backward()  # far-off targets -> a huge gradient
    before = nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm).item()
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    return before, after.item()


if __name__ == "__main__":
    lrs, (fig, ax) = schedules(), plt.subplots(figsize=(7, 4))
    for name, values in lrs.items():
        ax.plot(values, label=name)
        shown = " ".join(f"{values[step]:.4f}" for step in (0, 10, 20, 40))
        print(f"{name:<24} lr at steps 0/10/20/40: {shown}")
    ax.set(xlabel="step", ylabel="learning rate")
    ax.legend()
    save_figure(fig, args.out / "lr_schedules.png")
    results |= {"lr_schedules": lrs}
    before, after = clipping(args.seed)
    print(f"total gradient norm before clipping {before:.1f}, after {after:.4f}")
    results |= {"grad_norm_before": before, "grad_norm_after": after}

# %%
if __name__ == "__main__":
    metrics = results
    write_metrics(args.out, metrics, headline="best_val_loss_early_stopping")
