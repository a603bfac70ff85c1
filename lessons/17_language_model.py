"""Language modelling: predict the next character of a novel with counts, a GRU and a small GPT.

What you will learn
  - character ids, a split by position, batches of (block, next block); a bigram count table
    as the bar to beat; cross-entropy in nats per character and perplexity
  - the causal mask by hand (= `F.scaled_dot_product_attention(is_causal=True)`), tested
  - a GRU and a GPT (token + position embeddings, pre-LayerNorm masked self-attention blocks,
    tied weights) trained side by side; new text sampled with a temperature and top-k

How to run
    python lessons/17_language_model.py            # Pride and Prejudice, both models
    python lessons/17_language_model.py --quick    # a few steps: seconds
The book: `<data root>/dlwpt/p1ch4/jane-austen/1342-0.txt` as in lesson 02 (offline: a stand-in).

Time: --quick ~6 s, full ~3 min on a 2-core CPU (nats/char: bigram 2.39, GRU 1.35, GPT 1.50).
"""

# %%
import math
import random
import re
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from common.cli import lesson_args, positive_float, positive_int
from common.data import DataError, data_file
from common.report import progress, save_figure, write_metrics

BOOK = "dlwpt/p1ch4/jane-austen/1342-0.txt"
BOOK_URL = "https://raw.githubusercontent.com/deep-learning-with-pytorch/dlwpt-code/d6c0210143daa133bbdeddaffc8993b1e17b5174/data/p1ch4/jane-austen/1342-0.txt"
BOOK_MD5 = "5f90751528addaf3a9c22e8ded1af37d"


def configure(parser) -> None:
    parser.add_argument("--block", type=positive_int, default=64, help="context length (64)")
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="peak AdamW rate (3e-3)")


if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    args = lesson_args(__doc__, name="17_language_model", configure=configure, epochs=3,
                       batch_size=32, threads=1)  # fmt: skip
    device, block = args.device, args.block

# %% [markdown]
# ## 1. The text as character ids
# The vocabulary is every character the text uses, sorted; a character's id is its place in it.
# Gutenberg's header and licence are cut off and the lines, wrapped at 70 characters, joined (a
# printer's line break says nothing about English). The split is **by position**: the first 90%
# trains, the last 10% validates (a random split of windows would share sentences across both).


# %%
def clean(text: str) -> str:
    """The text between Gutenberg's START and END lines (if any), wrapped lines joined."""
    text = re.split(r"\*\*\* START OF.*\n", text, maxsplit=1)[-1]
    text = re.split(r"\*\*\* END OF|End of the Project Gutenberg", text, maxsplit=1)[0]
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text).strip()  # a lone newline becomes a space


def stand_in_text(characters: int = 680_000, seed: int = 0) -> str:
    """Made-up words, the n-th commonest 1/n as often as the first (as in real text)."""
    draw = random.Random(seed)
    syllables = ["ba", "ker", "lo", "mi", "quor", "ven", "tib", "ash", "wel", "dun", "fra", "sel"]
    words = ["".join(draw.choices(syllables, k=draw.randint(1, 3))) for _ in range(3000)]
    stream = iter(draw.choices(words, [1 / n for n in range(1, 3001)], k=characters // 3))
    parts, size = [], 0
    while size < characters:  # at least 3 characters a word: the stream lasts
        sentence = " ".join(next(stream) for _ in range(draw.randint(4, 14)))
        parts.append(sentence.capitalize() + draw.choice([". ", ". ", "! ", "? ", ".\n\n"]))
        size += len(parts[-1])
    return "".join(parts)[:characters]


def load_text(args) -> tuple[str, str]:
    """(text, where it came from): the book under the data root, else the stand-in."""
    path = data_file(args, BOOK, url=BOOK_URL, md5=BOOK_MD5, name="Pride and Prejudice",
                     how_to_get="run once online, or copy the book's data/p1ch4/jane-austen/ "
                                f"under {args.data_dir}/dlwpt/")  # fmt: skip
    if path is None:
        return stand_in_text(), "stand-in (made-up sentences, not the book)"
    try:
        return clean(path.read_text(encoding="utf-8-sig")), "Pride and Prejudice"
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: expected UTF-8 text ({error.reason})") from None


if __name__ == "__main__":
    text, source = load_text(args)
    if len(text) < 50 * block:
        raise DataError(f"{source}: {len(text)} characters, too few for windows of {block}")
    chars = sorted(set(text))
    vocab, stoi = len(chars), {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    cut = int(0.9 * len(ids))  # validation: whole windows (plus one target), see section 3
    train_ids, val_ids = ids[:cut], ids[cut : cut + (len(ids) - cut - 1) // block * block + 1]
    val_ids = val_ids[: 8 * block + 1] if args.quick else val_ids
    print(f"text: {source}, {len(text):,} characters, {vocab} distinct:\n{''.join(chars)!r}")
    print(f"{text[:12]!r} -> ids {ids[:12].tolist()}")
    print(f"training characters {len(train_ids):,}, validation characters {len(val_ids):,}")

# %% [markdown]
# ## 2. Batches of (block, next block)
# A training pair is a window of `block` characters and the same window moved on by one: one
# window asks `block` questions at once ("what follows this prefix?"). Windows may start anywhere;
# an epoch draws as many random ones as the text has blocks (`RandomSampler(num_samples=...)`).


# %%
class CharWindows(Dataset):
    def __init__(self, ids: torch.Tensor, block: int):
        self.ids, self.block = ids, block

    def __len__(self) -> int:
        return len(self.ids) - self.block

    def __getitem__(self, i: int):
        return self.ids[i : i + self.block], self.ids[i + 1 : i + 1 + self.block]


if __name__ == "__main__":
    windows = CharWindows(train_ids, block)
    per_epoch = 3 * args.batch_size if args.quick else len(train_ids) // block
    sampler = RandomSampler(windows, num_samples=per_epoch,
                            generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    train_loader = DataLoader(windows, args.batch_size, sampler=sampler)
    xb, yb = next(iter(train_loader))
    print(f"an epoch: {per_epoch:,} of the {len(windows):,} windows, {len(train_loader)} batches "
          f"of inputs {list(xb.shape)} and targets {list(yb.shape)}")  # fmt: skip
    for label, window in zip(("input ", "target"), windows[1000]):
        print(f"{label} {''.join(chars[i] for i in window[:48])!r}...")

# %% [markdown]
# ## 3. The bar to beat: a bigram table, and the score
# Count how often character $b$ follows $a$ in the training text, add one to every count (an
# unseen pair keeps some probability instead of 0, whose log is $-\infty$), normalize each row:
# $P(b \mid a) = (n_{ab} + 1) / (n_a + V)$. Every model is scored on the validation text by its
# **cross-entropy** $-\frac{1}{N}\sum_t \ln P(x_{t+1} \mid x_{\le t})$ in nats per character and
# its **perplexity** $e^{\text{loss}}$ (knowing nothing scores $\ln V$, perplexity $V$). Looking up
# row $a$ is what `nn.Embedding` does: with the log-table as its weight it is a model too.


# %%
def bigram_log_probs(train_ids: torch.Tensor, vocab: int) -> torch.Tensor:
    pairs = train_ids[:-1] * vocab + train_ids[1:]  # the pair (a, b) as one number
    counts = torch.bincount(pairs, minlength=vocab * vocab).view(vocab, vocab).float()
    return ((counts + 1) / (counts + 1).sum(dim=1, keepdim=True)).log()


def evaluate(model, ids: torch.Tensor, block: int, device, batch: int = 128) -> float:
    """Mean cross-entropy (nats/char) of predicting ids[1:], one window of `block` at a time."""
    model.eval()
    n, total = (len(ids) - 1) // block * block, 0.0
    inputs, targets = ids[:n].view(-1, block), ids[1 : n + 1].view(-1, block)
    with torch.no_grad():
        for x, y in zip(inputs.split(batch), targets.split(batch)):
            logits = model(x.to(device))  # B x T x V
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten().to(device), reduction="sum")
    return float(total) / n


if __name__ == "__main__":
    log_probs = bigram_log_probs(train_ids, vocab)
    bigram = nn.Embedding.from_pretrained(log_probs).to(device)  # B x T -> B x T x V
    scores = {"uniform": math.log(vocab),
              "bigram by hand": -log_probs[val_ids[:-1], val_ids[1:]].mean().item(),
              "F.cross_entropy": F.cross_entropy(log_probs[val_ids[:-1]], val_ids[1:]).item(),
              "evaluate(bigram)": evaluate(bigram, val_ids, block, device)}  # fmt: skip
    for label, loss in scores.items():
        print(f"{label:>16}: {loss:.4f} nats/char, perplexity {math.exp(loss):6.2f}")

# %% [markdown]
# ## 4. The causal mask, by hand
# Self-attention lets every position look at every other: for predicting the next character,
# cheating. The causal mask sets the scores of later positions ($j > i$) to $-\infty$ before the
# softmax, so their weights are exactly 0 and row $i$ spreads over positions $0..i$ only. The GPT
# below uses this function; `F.scaled_dot_product_attention(is_causal=True)` is its fused twin.


# %%
def causal_attention(q, k, v):
    """softmax(Q K^T / sqrt(d), future masked) V; returns (output, weights)."""
    steps = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    # True marks what is hidden; the notes' mask and SDPA's boolean attn_mask mark what is kept.
    future = torch.ones(steps, steps, dtype=torch.bool, device=q.device).triu(diagonal=1)
    weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
    return weights @ v, weights


if __name__ == "__main__":
    q, k, v = torch.randn(3, 1, 5, 8).unbind(0)
    out, mask_weights = causal_attention(q, k, v)
    fused_gap = (out - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max()
    print(f"causal attention weights, 5 positions:\n{mask_weights[0].numpy().round(3)}")
    print(f"by hand vs F.scaled_dot_product_attention(is_causal=True): max gap {fused_gap:.1e}")

# %% [markdown]
# ## 5. Two neural language models
# **GRU**: embed each character, run a GRU over the window, map each hidden state to $V$ logits;
# causal by construction (its state at $t$ has read $x_0..x_t$ only). **GPT**: token plus learned
# position embeddings (attention alone ignores order), blocks of masked multi-head self-attention
# and a 4×-wide MLP, each applied as $x + f(\mathrm{LayerNorm}(x))$ (pre-LayerNorm: a clean
# residual path), a last LayerNorm and a linear layer whose weight is the embedding's (**weight
# tying**). The check: change one character; which predictions move?


# %%
class GRULanguageModel(nn.Module):
    def __init__(self, vocab: int, embed: int = 64, hidden: int = 256):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids):  # B x T -> B x T x V
        return self.head(self.gru(self.embedding(ids))[0])


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.ln1, self.ln2 = heads, nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # queries, keys and values in one product
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        B, T, C = x.shape  # qkv: B x T x 3C -> 3 x B x heads x T x C/heads
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = causal_attention(q, k, v)[0]  # or F.scaled_dot_product_attention(is_causal=True)
        x = x + self.proj(out.transpose(1, 2).reshape(B, T, C))  # the heads side by side
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab, block=64, dim=96, layers=3, heads=4, tie=True):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)
        if tie:
            self.head.weight = self.tokens.weight
        for module in self.modules():  # small weights: the first predictions are near uniform
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids):  # B x T -> B x T x V
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        return self.head(self.ln(self.blocks(x)))


if __name__ == "__main__":
    models = {"gru": GRULanguageModel(vocab).to(device), "gpt": GPT(vocab, block).to(device)}
    probe, at = xb[:1].to(device), block - 10
    changed = probe.clone()
    changed[0, at] = (probe[0, at] + 1) % vocab  # another character at position `at`
    for name, model in models.items():
        with torch.no_grad():
            moved = (model.eval()(changed) - model(probe)).abs().amax(dim=-1)[0]  # per position
        print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters; changing "
              f"character {at} moves the logits before it by {moved[:at].max():.1e}, "
              f"from it on by up to {moved[at:].max():.1e}")  # fmt: skip
    gpt = models["gpt"]

# %% [markdown]
# ## 6. Training side by side
# The loop of lesson 06 with lesson 13's gradient clipping and a one-cycle schedule (the rate
# warms up, then decays to about 0); the loss averages all $B \times T$ predictions of a batch.
# Both get the same steps, about equally costly here. On a CPU, for minutes, the GRU is hard to
# beat: the transformer's strength, every position trained at once, pays off at scale on a GPU.


# %%
def train_epoch(model, loader, loss_fn, optimizer, scheduler, device) -> float:
    model.train()
    total = 0.0
    for x, y in progress(loader, desc="training"):
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        total += loss.item()
    return total / len(loader)


if __name__ == "__main__":
    loss_fn, histories = nn.CrossEntropyLoss(), {}
    epochs = min(args.epochs, 2) if args.quick else args.epochs
    for name, model in models.items():
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
        steps = epochs * len(train_loader)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
        history = histories[name] = {"loss": [], "val_loss": [], "seconds": []}
        print(f"{name}: AdamW up to {args.lr:g}, {epochs} epochs of {len(train_loader)} batches")
        for epoch in range(1, epochs + 1):
            epoch_started = time.perf_counter()  # loss.item() waits for the device: fair timing
            loss = train_epoch(model, train_loader, loss_fn, optimizer, scheduler, device)
            seconds = time.perf_counter() - epoch_started
            val_loss = evaluate(model, val_ids, block, device)
            for key, value in zip(history, (loss, val_loss, seconds)):
                history[key].append(value)
            print(f"  epoch {epoch}: train {loss:.4f} | validation {val_loss:.4f} nats/char, "
                  f"perplexity {math.exp(val_loss):.2f} | {seconds:.1f} s")  # fmt: skip
    results = {"bigram": scores["evaluate(bigram)"]}
    results |= {name: history["val_loss"][-1] for name, history in histories.items()}
    for name, loss in results.items():
        print(f"{name:>6}: validation {loss:.4f} nats/char, perplexity {math.exp(loss):.2f}")
    print(f"GPT minus bigram: {results['gpt'] - results['bigram']:+.3f} nats/char")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, history in histories.items():
        ax.plot(range(1, epochs + 1), history["val_loss"], "o-", label=name)
    ax.axhline(results["bigram"], color="gray", ls="--", label="bigram")
    ax.set(xlabel="epoch", xticks=range(1, epochs + 1), ylabel="validation nats/char", title=source)
    ax.legend()
    save_figure(fig, args.out / "language_models.png")

# %% [markdown]
# ## 7. Writing: temperature and top-k
# To write, feed a prompt, turn the last position's logits $z$ into probabilities
# $p_i \propto e^{z_i / \tau}$, draw a character, append it, repeat (the GPT sees at most the
# last `block`). A temperature $\tau < 1$ sharpens the distribution (safe, repetitive text),
# $\tau > 1$ flattens it (bolder, more misspelt); top-$k$ draws only among the $k$ likeliest.
# Each setting gets the same random draws. The notes' "AI writes poems" is this, trained on poems.


# %%
def next_char_probs(logits, temperature: float = 1.0, top_k: int | None = None):
    logits = logits / temperature
    if top_k is not None:  # everything below the k-th largest logit gets probability 0
        logits = logits.masked_fill(logits < logits.topk(top_k).values[..., -1:], float("-inf"))
    return logits.softmax(dim=-1)


def generate(model, prompt, length, block, device, temperature=1.0, top_k=None, seed=0):
    """`prompt` (1-D ids) followed by `length` sampled ids."""
    model.eval()
    draw, ids = torch.Generator().manual_seed(seed), prompt
    with torch.no_grad():
        for _ in range(length):
            logits = model(ids[None, -block:].to(device))[0, -1].cpu()
            probs = next_char_probs(logits, temperature, top_k)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=draw)])
    return ids


if __name__ == "__main__":
    z = torch.tensor([2.0, 1.0, 0.0, -1.0])
    for t, k in [(0.5, None), (1.0, None), (2.0, None), (1.0, 2)]:
        probs = next_char_probs(z, t, k).numpy().round(3)
        print(f"logits {z.tolist()}, temperature {t}, top-k {k}: {probs}")
    start = text.index("\n\n", cut) + 2  # a paragraph of the validation text begins the prompt
    prompt, samples, length = ids[start : start + 20], {}, 20 if args.quick else 200
    for label, model, temperature, top_k in [
        ("gpt, temperature 0.5", gpt, 0.5, None), ("gpt, temperature 1.0", gpt, 1.0, None),
        ("gpt, temperature 1.0, top-5", gpt, 1.0, 5), ("gpt, temperature 1.5", gpt, 1.5, None),
        ("gru, temperature 0.8", models["gru"], 0.8, None), ("bigram", bigram, 1.0, None),
    ]:  # fmt: skip
        out = generate(model, prompt, length, block, device, temperature, top_k, args.seed)
        samples[label] = "".join(chars[i] for i in out)
        print(f"{label}:\n  {samples[label]!r}")
    metrics = {f"{n}_val_loss": v for n, v in results.items()} | {
        f"{n}_{key}_history": h[key] for n, h in histories.items() for key in h} | {
        "uniform_loss": scores["uniform"], "gpt_below_bigram": results["bigram"] - results["gpt"],
        "samples": samples, "data_source": source, "vocab_size": vocab, "block": block,
        "epochs": epochs}  # fmt: skip
    write_metrics(args.out, metrics, headline="gpt_val_loss")
