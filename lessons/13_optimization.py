"""Optimization in practice: capacity, regularization, saddle points, optimizers, schedules.

What you will learn
  - model bias vs overfitting: train and validation curves of models of growing capacity, and
    three cures for overfitting: early stopping, weight decay, dropout
  - why "a constant plus a sum of sigmoids (or ReLUs)" can fit any curve
  - critical points: the saddle of L = (1 - w1*w2)^2, its Hessian and the direction that escapes it
  - small vs large batches: time per epoch and accuracy (FashionMNIST)
  - SGD, momentum, Adagrad, RMSProp and Adam on one surface and on one network
  - learning-rate schedules (step, exponential, warm-up then decay) and gradient clipping

How to run
    python lessons/13_optimization.py                     # everything (well under a minute)
    python lessons/13_optimization.py --section saddle    # one topic only
    python lessons/13_optimization.py --quick             # fewer steps, a few seconds
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~6 s, full ~15 s on a 2-core CPU.
"""

# %% Imports
from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from common.cli import lesson_args
from common.data import is_stand_in, vision_dataset
from common.device import synchronize
from common.report import save_figure, write_metrics

LESSON = Path(__file__).stem
SECTIONS = ["capacity", "pieces", "saddle", "batch", "optimizers", "schedules", "clipping"]


# %% One small training loop, shared by every experiment below
def fit(model, opt, train, val, *, epochs, batch_size=None, loss_fn=F.mse_loss, patience=None):
    """Train on in-memory tensors; return per-epoch train/val losses (and val accuracy for
    class labels). `batch_size=None`: full batch. With `patience`, stop once the validation
    loss has not improved for that many epochs and restore the best weights (early stopping)."""
    (x, y), (x_val, y_val) = train, val
    history = {"train": [], "val": [], "accuracy": []}
    best, best_state, since_best = float("inf"), None, 0
    for _ in range(epochs):
        model.train()  # dropout on
        order = torch.randperm(len(x), device=x.device)  # reshuffle every epoch
        total = 0.0
        for start in range(0, len(x), batch_size or len(x)):
            index = order[start : start + (batch_size or len(x))]
            loss = loss_fn(model(x[index]), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(index)
        with torch.no_grad():
            out = model.eval()(x_val)  # eval(): dropout off
        history["train"].append(total / len(x))
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


# %% 1. Model bias vs overfitting, and three cures (synthetic curve)
def capacity(args, steps):
    print("\n# 1. Capacity: model bias vs overfitting (train on 30 points, validate on 300)")
    # Few noisy samples of sin(1.5x) + 0.3x: easy to underfit, easy to overfit.
    x = torch.rand(330, 1, device=args.device) * 6 - 3
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
    ]
    results, fig, ax = {}, *plt.subplots(figsize=(8, 4.5))
    print(f"  {'model':<26} {'train loss':>10} {'val loss':>9} {'best val (step)':>16}")
    for (name, model, decay, patience), color in zip(runs, plt.cm.tab10.colors):
        # AdamW applies weight decay directly to the weights: w <- w - lr * decay * w
        opt = torch.optim.AdamW(model.to(args.device).parameters(), lr=3e-3, weight_decay=decay)
        history = fit(model, opt, train, val, epochs=steps, patience=patience)
        with torch.no_grad():  # losses of the final weights (the best ones with early stopping)
            t_loss, v_loss = (F.mse_loss(model(x), y).item() for x, y in (train, val))
        best = min(history["val"])
        results[name] = {"train": t_loss, "val": v_loss, "best_val": best}
        step = history["val"].index(best)
        print(f"  {name:<26} {t_loss:>10.3f} {v_loss:>9.3f} {best:>9.3f} ({step:>4})")
        ax.plot(history["train"], color=color, ls="--", lw=1)
        ax.plot(history["val"], color=color, label=name)
        if patience:
            loss_history = history["train"]
    ax.set(xlabel="step", ylabel="MSE (dashed: train, solid: validation)", yscale="log")
    ax.legend(fontsize=8)
    save_figure(fig, args.out / "capacity_curves.png")
    print("  Linear: both losses high (model bias). Big MLP: train loss ends far below validation")
    print("  loss (overfitting); early stopping, weight decay and dropout narrow that gap.")
    best_val = results["big + early stopping"]["val"]
    return {
        "best_val_loss_early_stopping": best_val,
        "loss_history": loss_history,
        "capacity": results,
    }


# %% 2. A constant plus a sum of sigmoids / ReLUs fits any curve
def hard_sigmoid(x, start, end, height):
    """0 before `start`, rising linearly to `height` at `end`: the difference of two ReLUs."""
    return height * (F.relu(x - start) - F.relu(x - end)) / (end - start)


def pieces(args, steps):
    print("\n# 2. A piecewise-linear curve = constant + sum of hard sigmoids (two ReLUs each)")
    x = torch.linspace(-3, 3, 200, device=args.device).unsqueeze(1)
    red = 1.0 + hard_sigmoid(x, -2.5, -1.5, -0.8) + hard_sigmoid(x, -0.5, 0.5, 1.5)
    red = red + hard_sigmoid(x, 1.5, 2.5, -1.0)
    gap = (hard_sigmoid(x, -0.5, 0.5, 1.5) - 1.5 * (x + 0.5).clamp(0, 1)).abs().max().item()
    print(f"  two ReLUs vs a clamped line (hard sigmoid): max difference {gap:.1e}")
    errors, fig, ax = {}, *plt.subplots(figsize=(7, 4))
    ax.plot(x.cpu(), red.cpu(), "k", lw=3, label="target")
    for units in (1, 4, 16):
        for act in (nn.Sigmoid, nn.ReLU):
            # y = b + sum_i c_i * act(w_i * x + b_i): exactly Linear -> activation -> Linear
            torch.manual_seed(args.seed)  # every model starts from the same random state
            model = nn.Sequential(nn.Linear(1, units), act(), nn.Linear(units, 1)).to(args.device)
            opt = torch.optim.Adam(model.parameters(), lr=0.1)
            name = f"{units} {act.__name__}"
            errors[name] = fit(model, opt, (x, red), (x, red), epochs=steps)["val"][-1]
            print(f"  {name:<12} MSE {errors[name]:.4f}")
            if units == 16:
                ax.plot(x.cpu(), model(x).detach().cpu(), label=f"sum of {name}s")
    ax.legend()
    save_figure(fig, args.out / "sum_of_pieces.png")
    print("  One piece cannot follow three bends; with more pieces the error drops.")
    return {"pieces_mse": errors, "hard_sigmoid_gap": gap}


# %% 3. Critical points: the saddle of (1 - w1*w2*x)^2 at the one sample (x, y) = (1, 1)
def saddle_loss(w, x=1.0, y=1.0):
    return (y - w[0] * w[1] * x) ** 2


def saddle(args):
    print("\n# 3. Saddle point of L(w1, w2) = (1 - w1*w2)^2")
    w = torch.zeros(2, requires_grad=True)
    (grad,) = torch.autograd.grad(saddle_loss(w), w)
    hessian = torch.autograd.functional.hessian(saddle_loss, w.detach())
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)  # ascending; columns are vectors
    escape = eigenvectors[:, 0] * torch.sign(eigenvectors[0, 0])  # the eigenvector of -2
    print(f"  gradient at (0, 0): {grad.tolist()}  -> a critical point, plain GD cannot move")
    print(f"  Hessian: {hessian.tolist()}   (reference [[0, -2], [-2, 0]])")
    print(f"  eigenvalues: {eigenvalues.tolist()}   (reference [-2, 2]): one negative -> saddle")
    print(f"  eigenvector of -2: {[round(v, 4) for v in escape.tolist()]} (proportional to [1, 1])")
    along_u, along_v = (saddle_loss(0.5 * u).item() for u in (escape, eigenvectors[:, 1]))
    print(f"  L(0, 0) = 1, L(0.5 u) = {along_u:.4f} (lower), L(0.5 v) = {along_v:.4f} (higher):")
    print("  stepping along u leaves the saddle downhill (rarely done in practice: H is costly)")
    return {
        "gradient": grad.tolist(),
        "hessian": hessian.tolist(),
        "eigenvalues": eigenvalues.tolist(),
        "escape_direction": escape.tolist(),
        "loss_along_escape": along_u,
        "loss_along_other": along_v,
    }


# %% FashionMNIST as in-memory tensors (for the batch-size and optimizer comparisons)
def fashion(args, n_train, n_val):
    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    tensors, stand_in = [], False
    for train, n in ((True, n_train), (False, n_val)):  # validation images: the test split
        dataset = vision_dataset("FashionMNIST", args, train=train, transform=to_tensor)
        images, labels = zip(*(dataset[i] for i in range(n)))
        x, y = torch.stack(images).flatten(1), torch.tensor(labels)
        tensors.append((x.to(args.device), y.to(args.device)))
        stand_in |= is_stand_in(dataset)
    return tensors, stand_in


# %% 4. Small vs large batches
def batch_sizes(args, train, val):
    print(f"\n# 4. Batch size: {args.epochs} epochs of SGD (lr 0.1) for each batch size")
    results = {}
    for batch_size in (16, 128, 1024):
        torch.manual_seed(args.seed)
        model = mlp(784, 128, 10).to(args.device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        synchronize(args.device)  # GPU work is asynchronous: wait before reading the clock
        started = time.perf_counter()
        history = fit(model, opt, train, val, epochs=args.epochs, batch_size=batch_size,
                      loss_fn=F.cross_entropy)  # fmt: skip
        synchronize(args.device)
        seconds = (time.perf_counter() - started) / args.epochs
        results[batch_size] = {"epoch_s": seconds, "val_accuracy": history["accuracy"][-1]}
        updates = -(-len(train[0]) // batch_size)  # ceil: the last batch may be smaller
        print(f"  batch {batch_size:>4}: {updates:>4} updates/epoch, {seconds:.2f} s/epoch,"
              f" val accuracy {history['accuracy'][-1]:.3f}")  # fmt: skip
    print("  Small batches: many noisy updates per epoch; large: few, smooth, cheaper per sample.")
    return {"batch_size": results}


# %% 5. Optimizers: on one surface, then on one network
# Update rules (g = gradient, lr = learning rate, all per parameter):
#   SGD:      w -= lr * g
#   momentum: m = beta * m + g;           w -= lr * m             (keeps rolling like a ball)
#   Adagrad:  s += g^2;                   w -= lr * g / sqrt(s)   (steps only ever shrink)
#   RMSProp:  s = a * s + (1 - a) * g^2;  w -= lr * g / sqrt(s)   (forgets old gradients)
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


def optimizers(args, train, val):
    print("\n# 5. Optimizers on the valley 0.02*w1^2 + 2*w2^2, 50 steps from (-4.5, 1.5)")
    w1, w2 = torch.meshgrid(torch.linspace(-5, 1, 100), torch.linspace(-2, 2, 100), indexing="xy")
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.contour(w1, w2, valley(torch.stack([w1, w2], -1)), levels=20, cmap="Greys")
    surface, network = {}, {}
    for name, (kind, options, lr, _) in OPTIMIZERS.items():
        w = torch.tensor([-4.5, 1.5], requires_grad=True)
        opt, path = kind([w], lr=lr, **options), [w.tolist()]
        for _ in range(50):
            opt.zero_grad()
            valley(w).backward()
            opt.step()
            path.append(w.tolist())
        surface[name] = valley(w).item()
        ax.plot(*zip(*path), marker=".", ms=3, label=f"{name}: final loss {surface[name]:.4f}")
        print(f"  {name:<9} final loss {surface[name]:.4f}")
    ax.set(xlabel="w1", ylabel="w2", title="optimizer trajectories")
    ax.legend(fontsize=8)
    save_figure(fig, args.out / "optimizer_trajectories.png")
    print("  SGD's lr is capped by the steep w2 direction, so it crawls along w1; the adaptive")
    print("  methods scale each parameter's step by its own gradient history.")

    print(f"\n  One MLP (same initial weights), {args.epochs} epochs on FashionMNIST:")
    torch.manual_seed(args.seed)
    initial = mlp(784, 128, 10).to(args.device)
    classify = dict(epochs=args.epochs, batch_size=args.batch_size, loss_fn=F.cross_entropy)
    for name, (kind, options, _, lr) in OPTIMIZERS.items():
        model = copy.deepcopy(initial)
        opt = kind(model.parameters(), lr=lr, **options)
        history = fit(model, opt, train, val, **classify)
        loss, acc = history["train"][-1], history["accuracy"][-1]
        network[name] = {"train_loss": loss, "val_accuracy": acc}
        print(f"  {name:<9} lr {lr:<6} final train loss {loss:.3f}, val accuracy {acc:.3f}")
    return {"optimizer_surface_loss": surface, "optimizer_network": network}


# %% 6. Learning-rate schedules
def schedules(args, steps=60):
    print("\n# 6. Learning-rate schedules (base lr 0.1); lr read before every step")
    S = torch.optim.lr_scheduler
    makers = {
        "step (x0.5 every 20)": lambda o: S.StepLR(o, step_size=20, gamma=0.5),
        "exponential (x0.95)": lambda o: S.ExponentialLR(o, gamma=0.95),
        # warm-up: lr grows linearly from 0.01 to 0.1 over 10 steps, then decays
        "warm-up 10, then x0.95": lambda o: S.SequentialLR(
            o, [S.LinearLR(o, start_factor=0.1, total_iters=10), S.ExponentialLR(o, gamma=0.95)],
            milestones=[10]),
    }  # fmt: skip
    lrs, fig, ax = {}, *plt.subplots(figsize=(7, 4))
    for name, make in makers.items():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler, lrs[name] = make(opt), []
        for _ in range(steps):
            lrs[name].append(opt.param_groups[0]["lr"])
            opt.step()  # (a real loop trains here)
            with warnings.catch_warnings():  # torch < 2.4 warns spuriously inside SequentialLR
                warnings.filterwarnings("ignore", "The epoch parameter", UserWarning)
                scheduler.step()  # once per step here; many recipes step once per epoch
        ax.plot(lrs[name], label=name)
        shown = " ".join(f"{lrs[name][i]:.4f}" for i in (0, 10, 20, 40))
        print(f"  {name:<24} lr at steps 0/10/20/40: {shown}")
    ax.set(xlabel="step", ylabel="learning rate")
    ax.legend()
    save_figure(fig, args.out / "lr_schedules.png")
    return {"lr_schedules": lrs}


# %% 7. Gradient clipping
def clipping(args, max_norm=1.0):
    print(f"\n# 7. Gradient clipping: rescale all gradients so their total norm is <= {max_norm}")
    torch.manual_seed(args.seed)
    model = mlp(1, 32, 1).to(args.device)
    x = torch.linspace(-3, 3, 64, device=args.device).unsqueeze(1)
    F.mse_loss(model(x), 100 * x).backward()  # far-off targets -> a huge gradient
    before = nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm).item()
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    print(f"  total gradient norm before {before:.1f}, after {after.item():.4f}")
    print("  Call it between loss.backward() and optimizer.step(); the direction is kept.")
    return {"grad_norm_before": before, "grad_norm_after": after.item()}


# %% Run the lesson
def main(argv=None) -> dict:
    def configure(parser):
        parser.add_argument("--section", choices=SECTIONS, help="run one topic only (default: all)")

    args = lesson_args(__doc__, argv, name=LESSON, configure=configure, epochs=3, batch_size=64)
    steps = 100 if args.quick else 1000  # full-batch steps on the synthetic curves
    wanted = [args.section] if args.section else SECTIONS
    metrics, threads = {"data": "synthetic curve"}, torch.get_num_threads()
    torch.set_num_threads(1)  # these models are tiny: more CPU threads only add overhead
    try:
        if "capacity" in wanted:
            metrics |= capacity(args, steps)
        if "pieces" in wanted:
            metrics |= pieces(args, steps)
        if "saddle" in wanted:
            metrics |= saddle(args)
        if "batch" in wanted or "optimizers" in wanted:
            sizes = (800, 400) if args.quick else (10000, 2000)
            (train, val), stand_in = fashion(args, *sizes)
            metrics["data"] += " + FashionMNIST" + (" (stand-in)" if stand_in else "")
            if "batch" in wanted:
                metrics |= batch_sizes(args, train, val)
            if "optimizers" in wanted:
                metrics |= optimizers(args, train, val)
        if "schedules" in wanted:
            metrics |= schedules(args)
        if "clipping" in wanted:
            metrics |= clipping(args)
    finally:
        torch.set_num_threads(threads)
    headline = "best_val_loss_early_stopping"
    write_metrics(args.out, metrics, headline=headline if headline in metrics else "data")
    return metrics


if __name__ == "__main__":
    main()
