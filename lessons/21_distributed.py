"""Distributed data parallel: one script, many processes, the same weights as one big batch.

What you will learn
  - what `torchrun` starts: one process per device, each told its rank and the world size
  - a process group (gloo on CPUs, NCCL on GPUs) and `all_reduce`, by hand
  - `DistributedSampler`: each rank reads its own shard of the data; `set_epoch` reshuffles
  - `DistributedDataParallel`: gradients averaged across ranks in `backward()`; saving a
    checkpoint from rank 0 only; `destroy_process_group`
  - the proof: 2 processes with batch B end with the weights of 1 process with batch 2B
How to run
    python lessons/21_distributed.py          # starts 2 local processes itself
    python lessons/21_distributed.py --quick  # a smoke run, seconds
    torchrun --standalone --nproc_per_node 2 lessons/21_distributed.py    # the usual way
    torchrun --nproc_per_node 8 lessons/21_distributed.py --device cuda   # 8 GPUs, NCCL
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 lessons/21_distributed.py --device cuda  # on each machine
Time: --quick ~13 s, full ~30 s on a 2-core CPU.
"""

# %%
import json
import logging
import os
import socket
import sys
from datetime import timedelta

import matplotlib.pyplot as plt
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from common import LessonError
from common.cli import lesson_args, non_negative_int, positive_int
from common.data import vision_dataset
from common.report import progress, save_figure, write_metrics
from common.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "lessons" / "21_distributed.py"  # what each started process runs
LEARNING_RATE = 0.1


def configure(parser) -> None:
    parser.add_argument("--nproc", type=positive_int, default=2, help="processes (default 2)")
    parser.add_argument("--port", type=non_negative_int, default=0, help="rendezvous port "
                        "(default 0: any free port)")  # fmt: skip
    parser.add_argument("--timeout", type=positive_int, default=60, help="seconds a rank waits "
                        "for the others before it gives up (default 60)")  # fmt: skip
    parser.add_argument("--crash-rank", type=non_negative_int, help="make this rank fail (a test)")


if __name__ == "__main__":
    # Each process started by torchrun (or by this lesson) finds its rank in the environment.
    worker = "LOCAL_RANK" in os.environ
    args = lesson_args(__doc__, name="21_distributed", configure=configure, threads=1,
                       epochs=2, batch_size=32)  # fmt: skip

# %% [markdown]
# ## 1. One script, many processes
# Data parallelism runs the **same script** in $W$ processes (the *world*), one per GPU or CPU
# share. `torchrun` starts them and sets, in each one's environment, `RANK` ($0 \dots W-1$),
# `WORLD_SIZE`, `LOCAL_RANK` (the rank on this machine: which GPU to use) and the address where
# they meet (`MASTER_ADDR`, `MASTER_PORT`). `init_process_group` connects them: the backend is
# **gloo** on CPUs and **NCCL** on NVIDIA GPUs. `python lessons/21_distributed.py` does what
# `torchrun --standalone` does, through the same launcher API (`elastic_launch`), and then
# reads what each process reported. If a process fails, the launcher stops the others; if one
# hangs, the others give up after `--timeout` seconds instead of waiting forever.


# %%
def free_port(port: int) -> int:
    """`port` if nothing listens on it (0: any free one); a port in use is a one-line error."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            message = f"port {port} is in use: pick another --port, or 0 for any free one"
            raise LessonError(message) from None
        return probe.getsockname()[1]


def launch(args) -> list[dict]:
    """Run this file in `args.nproc` processes, as torchrun does; return each rank's report."""
    flags = ["--quick"] * args.quick + ["--no-download"] * args.offline + [
        "--device", str(args.device), "--epochs", str(args.epochs), "--seed", str(args.seed),
        "--batch-size", str(args.batch_size), "--out", str(args.out),
        "--timeout", str(args.timeout)]  # fmt: skip
    if args.data_dir.is_dir():  # else each process finds the same default data root
        flags += ["--data-dir", str(args.data_dir)]
    if args.crash_rank is not None:
        flags += ["--crash-rank", str(args.crash_rank)]
    # Each process's output goes to outputs/21_distributed/logs/; this process prints reports.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # we say it below
    logs = DefaultLogsSpecs(log_dir=str(args.out / "logs"), redirects=Std.ALL)
    endpoint = f"127.0.0.1:{free_port(args.port)}"  # where the processes meet (rendezvous)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=args.nproc, max_restarts=0,
                          run_id=f"lesson21-{os.getpid()}", rdzv_backend="c10d",
                          rdzv_endpoint=endpoint, rdzv_timeout=args.timeout,
                          monitor_interval=0.1, logs_specs=logs)  # fmt: skip
    for rank in range(args.nproc):
        report_path(args, rank).unlink(missing_ok=True)
    try:
        elastic_launch(config, entrypoint=sys.executable)(str(SCRIPT), *flags)
    except ChildFailedError as error:
        rank = error.get_first_failure()[0]
        raise LessonError(
            f"rank {rank} of {args.nproc} failed: {last_error(args, rank)} (the "
            f"launcher stopped the others; logs in {args.out / 'logs'})"
        ) from None
    return [json.loads(report_path(args, rank).read_text(encoding="utf-8"))
            for rank in range(args.nproc)]  # fmt: skip


def report_path(args, rank: int):
    return args.out / f"rank{rank}.json"


def last_error(args, rank: int) -> str:
    """The last line the failed rank wrote to its stderr log (its error), if there is one."""
    logged = sorted((args.out / "logs").glob(f"**/{rank}/stderr.log"), key=os.path.getmtime)
    lines = logged[-1].read_text(encoding="utf-8", errors="replace").split("\n") if logged else []
    return next((line.strip() for line in reversed(lines) if line.strip()), "no error logged")


def start_process_group(args) -> tuple[int, int, torch.device]:
    """Join the group; each rank on its own GPU (NCCL) or on the CPU (gloo)."""
    local_rank = int(os.environ["LOCAL_RANK"])
    if args.device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:  # gloo works on CPU tensors; an MPS Mac trains data-parallel on its CPU cores
        device = torch.device("cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout))
    return dist.get_rank(), dist.get_world_size(), device


if __name__ == "__main__":
    if worker:
        rank, world, device = start_process_group(args)
        report = {"rank": rank, "world": world, "backend": dist.get_backend(), "pid": os.getpid()}
        print(f"[rank {rank}] joined: backend {report['backend']}, world size {world}")
        if rank == args.crash_rank:
            raise RuntimeError(f"rank {rank} was told to crash (--crash-rank)")
    else:
        reports = launch(args)
        print(f"started {len(reports)} processes with torch's launcher (what torchrun does):")
        for report in reports:
            print(f"  rank {report['rank']}: process {report['pid']}, backend "
                  f"{report['backend']}, world size {report['world']}")  # fmt: skip

# %% [markdown]
# ## 2. `all_reduce`: every rank ends with the sum
# A collective operation runs on every rank at once. `all_reduce(t, op=SUM)` replaces each
# rank's tensor `t` with the sum over all ranks: after it, every rank holds the same values.
# Data parallelism needs exactly this: each rank computes gradients on its own batch, and the
# average $\frac{1}{W}\sum_r g_r$ is what every rank then applies.


# %%
def all_reduce_example(rank: int, world: int) -> dict[str, list[float]]:
    """Rank r contributes [r + 1, 10 (r + 1)]; all_reduce leaves the sum on every rank."""
    mine = torch.tensor([rank + 1.0, 10.0 * (rank + 1)])
    total = mine.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)  # in place, on every rank
    return {"contributed": mine.tolist(), "sum": total.tolist(), "mean": (total / world).tolist()}


if __name__ == "__main__":
    if worker:
        report["all_reduce"] = all_reduce_example(rank, world)
        shown = [report]
    else:
        shown = reports
    for each in shown:
        step = each["all_reduce"]
        print(f"rank {each['rank']} contributed {step['contributed']} -> all_reduce(SUM) "
              f"-> {step['sum']} (mean {step['mean']})")  # fmt: skip

# %% [markdown]
# ## 3. `DistributedSampler`: each rank its own shard
# Each rank must see *different* examples, or $W$ processes would just repeat one another's
# work. `DistributedSampler` shuffles the indices with a generator seeded by `seed + epoch`
# (the same permutation on every rank) and gives rank $r$ every $W$-th index starting at $r$.
# Call `sampler.set_epoch(epoch)` before each epoch, or every epoch repeats the first order.
# The images: FashionMNIST's training split, kept as one tensor as in lesson 06.


# %%
def load_split(args, train: bool) -> TensorDataset:
    limit = (1024 if train else 512) if args.quick else None
    dataset = vision_dataset("FashionMNIST", args, train=train)
    images = dataset.data[:limit].unsqueeze(1).float() / 255
    return TensorDataset(images, torch.as_tensor(dataset.targets[:limit]))


def shards(size: int, world: int, epoch: int, seed: int) -> list[list[int]]:
    """The indices each rank reads in `epoch`, for a dataset of `size` examples."""
    rank_indices = []
    for rank in range(world):
        sampler = DistributedSampler(range(size), num_replicas=world, rank=rank, seed=seed)
        sampler.set_epoch(epoch)
        rank_indices.append(list(sampler))
    return rank_indices


if __name__ == "__main__":
    train_set = load_split(args, train=True)
    world_size = world if worker else args.nproc
    for epoch in (0, 1):
        for r, indices in enumerate(shards(12, world_size, epoch, args.seed)):
            if not worker or r == rank:
                print(f"12 examples, epoch {epoch}: rank {r} reads {indices}")

# %% [markdown]
# ## 4. `DistributedDataParallel`
# Wrapping the model, `DistributedDataParallel(model)` copies rank 0's initial weights to every
# rank and hooks into `backward()`: as gradients are computed they are all-reduced and divided
# by $W$, so every rank takes the same optimizer step and the copies stay identical. The
# training loop is the plain one; only the sampler and the wrapper are new. One rank (0) saves
# the checkpoint, atomically as in lesson 12: writing from every rank would race on one file.


# %%
def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)  # the same initial weights wherever it is built
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def train_data_parallel(train_set, args, rank, world, device) -> list[float]:
    """Train with DDP on this rank's shard; rank 0 saves the weights. Returns this rank's losses."""
    model = DistributedDataParallel(make_model(args.seed).to(device))
    sampler = DistributedSampler(train_set, seed=args.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn, losses = nn.CrossEntropyLoss(), []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        batches = progress(loader, desc=f"epoch {epoch + 1}") if rank == 0 else loader  # one bar
        for X, y in batches:
            X, y = X.to(device), y.to(device)
            loss = loss_fn(model(X), y)
            optimizer.zero_grad()
            loss.backward()  # DDP averages the gradients across ranks here
            optimizer.step()
            losses.append(loss.item())
    if rank == 0:  # model.module is the wrapped model: its state_dict has the plain names
        path, tmp = args.out / "ddp_model.pt", args.out / "ddp_model.pt.tmp"
        torch.save(model.module.state_dict(), tmp)
        os.replace(tmp, path)
    return losses


if __name__ == "__main__":
    if worker:
        report["losses"] = train_data_parallel(train_set, args, rank, world, device)
        dist.barrier()  # the checkpoint is complete before anyone reads it
        dist.destroy_process_group()
        with open(report_path(args, rank), "w", encoding="utf-8") as file:
            json.dump(report, file)
        shown = [report]
    else:
        shown = reports
    for each in shown:
        losses = each["losses"]
        print(
            f"rank {each['rank']}: {len(losses)} steps of {args.batch_size} images, loss "
            f"{sum(losses[:20]) / 20:.3f} (first 20) -> {sum(losses[-20:]) / 20:.3f} (last 20)"
        )

# %% [markdown]
# ## 5. The proof: $W$ processes × batch $B$ = one process × batch $WB$
# The mean loss over $WB$ examples is the mean of the $W$ ranks' mean losses over $B$ each, so
# its gradient is the average DDP computes. One process that reads, at each step, the union of
# the ranks' batches (the same samplers, built in one process) must end with the same weights,
# up to the rounding of a different summation order.


# %%
def train_one_process(train_set, args, world: int) -> nn.Module:
    """Plain training with batch world x B: step k reads every rank's k-th batch at once."""
    model = make_model(args.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    samplers = [DistributedSampler(train_set, world, r, seed=args.seed, drop_last=True)
                for r in range(world)]  # fmt: skip
    for epoch in range(args.epochs):
        loaders = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            loaders.append(DataLoader(train_set, args.batch_size, sampler=sampler, drop_last=True))
        for batches in zip(*loaders):
            X, y = torch.cat([X for X, _ in batches]), torch.cat([y for _, y in batches])
            loss = loss_fn(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, test_set: TensorDataset) -> float:
    images, labels = test_set.tensors
    return (model(images).argmax(1) == labels).float().mean().item()


if __name__ == "__main__":
    if not worker or rank == 0:  # one process reports: this one, or rank 0 under torchrun
        world_size = world if worker else args.nproc
        ddp_model = make_model(args.seed)
        ddp_model.load_state_dict(torch.load(args.out / "ddp_model.pt", weights_only=True))
        one_process = train_one_process(train_set, args, world_size)
        pairs = zip(ddp_model.state_dict().values(), one_process.state_dict().values())
        difference = max((a - b).abs().max().item() for a, b in pairs)
        test_set = load_split(args, train=False)
        test_accuracy = accuracy(ddp_model, test_set)
        big_batch = world_size * args.batch_size
        print(f"{world_size} processes x batch {args.batch_size} vs 1 process x batch "
              f"{big_batch}: largest weight difference {difference:.2e}")  # fmt: skip
        print(f"test accuracy of the data-parallel model: {test_accuracy:.4f}")

# %% [markdown]
# ## 6. The same file on GPUs and across machines
# Nothing above names a machine. On one machine with 8 GPUs: `torchrun --nproc_per_node 8
# lessons/21_distributed.py --device cuda` (NCCL, one GPU per `LOCAL_RANK`). On two machines,
# run on each `torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint
# HOST:29500 lessons/21_distributed.py --device cuda`, with `HOST` one machine's address: the
# ranks find each other there, and `RANK` runs over all 16 processes. The per-rank batch stays
# $B$; the effective batch is $WB$, which is why large runs scale the learning rate with $W$.


# %%
if __name__ == "__main__":
    if not worker or rank == 0:
        curves = reports if not worker else [report]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for each in curves:
            ax.plot(each["losses"], label=f"rank {each['rank']}", alpha=0.7)
        ax.set(xlabel="step", ylabel="training loss", title="each rank's loss on its own shard")
        ax.legend()
        save_figure(fig, args.out / "rank_losses.png")
        metrics = {"max_weight_difference": difference, "test_accuracy": test_accuracy,
                   "world_size": world_size, "batch_per_rank": args.batch_size,
                   "loss_history": curves[0]["losses"]}  # fmt: skip
        write_metrics(args.out, metrics, headline="max_weight_difference")
