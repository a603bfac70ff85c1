"""The Transformer encoder: one layer by hand, then a Transformer news classifier (AG_NEWS).

What you will learn: positional encoding; LayerNorm vs BatchNorm; residual connections; an
encoder layer from `nn.Linear`, `nn.LayerNorm` and lesson 14's attention, equal to
`nn.TransformerEncoderLayer` (post- and pre-norm, with and without a padding mask); a
Transformer classifier trained beside lesson 10's FastText; one headline's attention weights.
Run: python lessons/16_transformer.py [--quick] [--epochs N]. Data: <data root>/AG_NEWS/*.csv.
Time: --quick ~6 s, full ~100 s on the 6,000/1,600 split (2-core CPU).
"""

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from common.cli import lesson_args
from common.news import CLASSES, load_ag_news
from common.report import progress, save_figure, write_metrics
from common.text import build_vocab_from_iterator, get_tokenizer

VOCAB_SIZE, MAX_TOKENS = 20_000, 64  # words in the vocabulary; tokens kept per text
OPTIMIZERS = {"fasttext": {"lr": 1e-2, "weight_decay": 0.0},  # AdamW settings per model
              "transformer": {"lr": 3e-3, "weight_decay": 0.1}}  # fmt: skip
HEADLINE = "Oil prices climb as investors fear supply cuts"  # its attention is drawn in section 6

if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    # Small models: one CPU thread beats two here (--threads or LESSONS_THREADS override).
    args = lesson_args(__doc__, name="16_transformer", epochs=8, threads=1)
    device = args.device

# %% [markdown]
# ## 1. Positional encoding
# Attention sees its input as a *set*: shuffle the tokens and the outputs are shuffled the same
# way. To know word order, token $p$'s embedding gets a vector of sines and cosines added:
# $PE_{p,2i} = \sin(p / 10000^{2i/d})$, $PE_{p,2i+1} = \cos(p / 10000^{2i/d})$. Low dimensions
# oscillate fast, high ones slowly. As $\sin a \sin b + \cos a \cos b = \cos(a-b)$, the dot
# product $PE_p \cdot PE_{p+k}$ depends on the distance $k$ only, not on $p$.


# %%
def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """The table [length, dim] of the formula above (dim even)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    angles = position / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = angles.sin(), angles.cos()
    return table


if __name__ == "__main__":
    table = positional_encoding(MAX_TOKENS, 64)
    print(f"positional encoding {list(table.shape)}, PE[0][:4] = {table[0, :4].tolist()}")
    dots = {k: [round((table[p] @ table[p + k]).item(), 3) for p in (0, 10, 20)] for k in (1, 10)}
    print(f"PE[p] . PE[p+k] for p = 0, 10, 20: k = 1 {dots[1]}, k = 10 {dots[10]}")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    fig.colorbar(ax.imshow(table.T.numpy(), aspect="auto", cmap="RdBu", origin="lower"), ax=ax)
    ax.set(xlabel="position p", ylabel="dimension", title="sinusoidal positional encoding")
    save_figure(fig, args.out / "positional_encoding.png")

# %% [markdown]
# ## 2. LayerNorm, BatchNorm and residual connections
# Both norms compute $(x - \text{mean}) / \sqrt{\text{var} + \epsilon}$, then scale and shift by
# a learned $\gamma, \beta$. On `[batch, positions, features]` **BatchNorm** averages each feature
# over the batch and all positions, **LayerNorm** each token over its own features: a token's
# LayerNorm never depends on the other texts of the batch or their padding. (The notes put
# LayerNorm after a linear layer; a Transformer puts it after each residual sum, or before each
# sublayer: section 3.) A **residual connection** wraps a sublayer $f$ as $x + f(x)$: the input
# passes by unchanged and the gradient keeps a direct path back through any depth.


# %%
def compare_norms(x: torch.Tensor) -> dict[str, bool]:
    """nn.LayerNorm and nn.BatchNorm1d (training mode) on x [batch, positions, features]."""
    layer_norm, batch_norm = nn.LayerNorm(x.shape[-1]), nn.BatchNorm1d(x.shape[-1])
    by_batch = lambda t: batch_norm(t.transpose(1, 2)).transpose(1, 2)  # noqa: E731 (B, F, T)
    ln, bn, changed = layer_norm(x), by_batch(x), x.clone()
    changed[1] *= 10  # another text of the batch changes; text 0 stays as it is
    mean, var = x.mean(-1, keepdim=True), x.var(-1, correction=0, keepdim=True)
    per_token = (x - mean) / (var + layer_norm.eps).sqrt()
    per_feature = (x - x.mean((0, 1))) / (x.var((0, 1), correction=0) + batch_norm.eps).sqrt()
    return {
        "LayerNorm = the formula per token": torch.allclose(ln, per_token, atol=1e-5),
        "BatchNorm1d = the formula per feature": torch.allclose(bn, per_feature, atol=1e-5),
        "LayerNorm of text 0 when text 1 changes: same": torch.equal(ln[0], layer_norm(changed)[0]),
        "BatchNorm of text 0 when text 1 changes: same": torch.equal(bn[0], by_batch(changed)[0]),
    }


if __name__ == "__main__":
    norms = compare_norms(torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0)) * 3 + 5)
    for label, value in norms.items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 3. One encoder layer by hand
# Self-attention projects $x$ to queries, keys and values (`in_proj`: $W_Q, W_K, W_V$ stacked,
# as PyTorch keeps them), runs lesson 14's $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$ in each of
# `heads` slices of `d_model`, joins the heads and projects back. The padding mask (True =
# padding) becomes lesson 14's mask (True = *may attend*). The **feed-forward network**
# $W_2\,\mathrm{ReLU}(W_1 x + b_1) + b_2$ then acts on each position alone. **Post-norm** (the
# paper): $x = \mathrm{LN}(x + \mathrm{SA}(x))$, then $\mathrm{LN}(x + \mathrm{FFN}(x))$;
# **pre-norm** (`norm_first=True`, easier to train deep): $x + \mathrm{SA}(\mathrm{LN}(x))$,
# then $x + \mathrm{FFN}(\mathrm{LN}(x))$. No dropout here: `eval()` turns PyTorch's off too.


# %%
def attention_by_hand(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V and the weights. `mask`: boolean, True = may attend."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer(d_model, heads, d_ff, batch_first=True), written out."""

    def __init__(self, d_model: int, heads: int, d_ff: int, norm_first: bool = False):
        super().__init__()
        self.heads, self.norm_first, self.weights = heads, norm_first, None
        self.in_proj, self.out_proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def self_attention(self, x, padding):
        q, k, v = self.in_proj(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        may_attend = None if padding is None else ~padding[:, None, None, :]  # [B, 1, 1, T]
        heads, self.weights = attention_by_hand(q, k, v, may_attend)  # q, k, v [B, heads, T, d_k]
        return self.out_proj(heads.transpose(1, 2).flatten(2))  # heads side by side again

    def feed_forward(self, x):
        return self.linear2(F.relu(self.linear1(x)))

    def forward(self, x, src_key_padding_mask=None):
        if self.norm_first:
            x = x + self.self_attention(self.norm1(x), src_key_padding_mask)
            return x + self.feed_forward(self.norm2(x))
        x = self.norm1(x + self.self_attention(x, src_key_padding_mask))
        return self.norm2(x + self.feed_forward(x))


def copy_weights(layer: nn.TransformerEncoderLayer) -> EncoderLayer:
    """An EncoderLayer holding `layer`'s weights: only the parameter names differ."""
    attention = layer.self_attn
    hand = EncoderLayer(attention.embed_dim, attention.num_heads, layer.linear1.out_features,
                        layer.norm_first).to(attention.in_proj_weight.device)  # fmt: skip
    renamed = {name.replace("self_attn.", "").replace("in_proj_", "in_proj."): value
               for name, value in layer.state_dict().items()}  # fmt: skip
    hand.load_state_dict(renamed)
    return hand


@torch.no_grad()
def check_encoder_layer(d_model: int = 16, heads: int = 4, d_ff: int = 32) -> dict[str, float]:
    """max |difference| from nn.TransformerEncoderLayer, and of a padded batch from each text."""
    lengths, differences = [5, 3, 2], {}
    texts = [torch.randn(n, d_model, generator=torch.Generator().manual_seed(n)) for n in lengths]
    x = pad_sequence(texts, batch_first=True)
    padding = torch.arange(5) >= torch.tensor(lengths)[:, None]  # True = padding
    for norm_first in (False, True):
        layer = nn.TransformerEncoderLayer(d_model, heads, d_ff, batch_first=True,
                                           norm_first=norm_first).eval()  # fmt: skip
        hand = copy_weights(layer)
        for mask, kind in [(None, "no padding mask"), (padding, "padding mask")]:
            theirs = layer(x, src_key_padding_mask=mask)
            differences[f"norm_first={norm_first}, {kind}"] = (hand(x, mask) - theirs).abs().max()
        batch = hand(x, padding)
        alone = [(batch[i, :n] - hand(text[None])[0]).abs().max()
                 for i, (text, n) in enumerate(zip(texts, lengths))]  # fmt: skip
        differences[f"norm_first={norm_first}, padded batch vs each text alone"] = max(alone)
    return {label: difference.item() for label, difference in differences.items()}


if __name__ == "__main__":
    torch.manual_seed(args.seed)
    layer_differences = check_encoder_layer()
    for label, difference in layer_differences.items():
        print(f"hand layer, {label}: max |difference| {difference:.1e}")

# %% [markdown]
# ## 4. AG_NEWS, tokens and a padding mask
# Lesson 10's data and text pipeline: the same rows (the real 6,000 / 1,600 split of `test.csv`
# where `train.csv` is missing), the "basic_english" tokenizer, a vocabulary of the 20,000 most
# frequent training tokens with `<pad>` = 0 and `<unk>` = 1. Attention's cost grows with the
# square of the length, so a text keeps its first `MAX_TOKENS` tokens. A batch carries its
# padding mask, `ids == <pad>` (True = padding).


# %%
def make_collate(vocab, tokenizer):
    """collate_fn: a list of (label, text) -> (labels, ids [B, T], padding mask [B, T])."""

    def collate(batch):
        # An empty text keeps one <unk>: a text of padding only has no key to attend to.
        ids = [torch.tensor(vocab(tokenizer(text))[:MAX_TOKENS] or [1]) for _, text in batch]
        padded = pad_sequence(ids, batch_first=True, padding_value=vocab["<pad>"])
        return torch.tensor([label for label, _ in batch]), padded, padded == vocab["<pad>"]

    return collate


if __name__ == "__main__":
    train_rows, test_rows, source = load_ag_news(args)
    if args.quick:  # a few batches and two epochs: the same code, seconds on a CPU
        train_rows, test_rows, args.epochs = train_rows[:384], test_rows[:256], min(args.epochs, 2)
    tokenizer = get_tokenizer("basic_english")
    tokenized = [tokenizer(text) for _, text in train_rows]
    vocab = build_vocab_from_iterator(tokenized, specials=["<pad>", "<unk>"], max_tokens=VOCAB_SIZE)
    vocab.set_default_index(vocab["<unk>"])
    fit = sum(len(tokens) <= MAX_TOKENS for tokens in tokenized) / len(tokenized)
    print(f"{source}: {len(train_rows):,} training and {len(test_rows):,} test rows; vocabulary "
          f"{len(vocab):,}; {fit:.1%} of the texts fit in {MAX_TOKENS} tokens")  # fmt: skip
    collate = make_collate(vocab, tokenizer)
    shuffle = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_rows, args.batch_size, shuffle=True, collate_fn=collate,
                              generator=shuffle)  # fmt: skip
    test_loader = DataLoader(test_rows, batch_size=256, collate_fn=collate)

# %% [markdown]
# ## 5. FastText and a Transformer, trained side by side
# **FastText**, lesson 10's baseline: the mean of the word embeddings, then a linear layer. The
# **Transformer**: token embeddings (scaled by $\sqrt{d}$) plus the positional encoding, two
# pre-norm `nn.TransformerEncoderLayer`s (section 3's layer) given the padding mask, a final
# LayerNorm, the **mean** over each text's real tokens, a linear layer. (BERT instead puts a
# learned [CLS] token in front of every text and classifies that token's output.) Both train in
# lesson 06's loop, with lesson 10's `clip_grad_norm_`, on the same batches in the same order.
# With far more weights per training text, the Transformer gets dropout 0.3 and AdamW's weight
# decay 0.1 against overfitting (lesson 13).


# %%
class FastText(nn.Module):
    def __init__(self, vocab_size, embed_dim=64, classes=4):
        super().__init__()  # padding_idx: the mean leaves <pad> out, so no offsets are needed
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.fc = nn.Linear(embed_dim, classes)

    def forward(self, ids, padding):  # the padding mask is not needed: ids say it all
        return self.fc(self.embedding(ids))


class TransformerClassifier(nn.Module):
    def __init__(self, vocab_size, d_model=32, heads=4, layers=2, d_ff=64, dropout=0.3):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.register_buffer("position", positional_encoding(MAX_TOKENS, d_model))
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, heads, d_ff, dropout, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, layers, nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)  # fmt: skip
        self.fc = nn.Linear(d_model, len(CLASSES))

    def embed(self, ids):  # scaled token embeddings + positions
        x = self.embedding(ids) * math.sqrt(self.fc.in_features)
        return self.dropout(x + self.position[: ids.shape[1]])

    def classify(self, x, padding):  # the mean over the real tokens, then the linear layer
        real = (~padding).unsqueeze(-1).float()
        return self.fc((x * real).sum(1) / real.sum(1))

    def forward(self, ids, padding):
        return self.classify(self.encoder(self.embed(ids), src_key_padding_mask=padding), padding)


def train_epoch(model, loader, loss_fn, optimizer, device) -> float:
    """One pass over the training batches; returns the mean training loss."""
    model.train()
    total = 0.0
    for labels, ids, padding in progress(loader, desc="training"):
        labels, ids, padding = labels.to(device), ids.to(device), padding.to(device)
        loss = loss_fn(model(ids, padding), labels)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total += loss.item()
    return total / len(loader)


def accuracy(model, loader, device) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for labels, ids, padding in loader:
            logits = model(ids.to(device), padding.to(device))
            correct += (logits.argmax(1).cpu() == labels).sum().item()
    return correct / len(loader.dataset)


if __name__ == "__main__":
    loss_fn, models, histories = nn.CrossEntropyLoss(), {}, {}
    for name, settings in OPTIMIZERS.items():
        torch.manual_seed(args.seed)
        shuffle.manual_seed(args.seed)  # the same batches for both models
        model = {"fasttext": FastText, "transformer": TransformerClassifier}[name](len(vocab))
        models[name] = model = model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), **settings)
        print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, AdamW "
              f"lr {settings['lr']:g}, weight decay {settings['weight_decay']:g}")  # fmt: skip
        history = histories[name] = {"loss": [], "accuracy": [], "seconds": []}
        for epoch in range(1, args.epochs + 1):
            started = time.perf_counter()  # loss.item() waits for the device: the time is fair
            loss = train_epoch(model, train_loader, loss_fn, optimizer, device)
            seconds = time.perf_counter() - started
            test_accuracy = accuracy(model, test_loader, device)
            for key, value in zip(history, (loss, test_accuracy, seconds)):
                history[key].append(value)
            print(f"  epoch {epoch}: loss {loss:.4f} | test accuracy {test_accuracy:.4f} | "
                  f"{seconds:.1f} s")  # fmt: skip

# %% [markdown]
# ## 6. What one headline attends to, and the results
# `nn.TransformerEncoderLayer` keeps no attention weights; section 3's layer does. So each
# trained layer is copied into an `EncoderLayer` and the headline runs through the copies
# (giving the model's own logits: checked); row $i$ of a map shows how token $i$ spreads its
# attention, averaged over the heads. On a few thousand texts FastText's average is cheap and
# hard to beat; the Transformer, which reads words in context, needs more data to pay off.


# %%
@torch.no_grad()
def attention_maps(model: TransformerClassifier, ids, padding):
    """(logits, one [heads, T, T] weight tensor per layer) of the first text of the batch."""
    model.eval()
    x, maps = model.embed(ids), []
    for layer in model.encoder.layers:
        hand = copy_weights(layer)
        x = hand(x, padding)
        maps.append(hand.weights[0].cpu())
    return model.classify(model.encoder.norm(x), padding), maps


if __name__ == "__main__":
    transformer = models["transformer"]
    _, ids, padding = (t.to(device) for t in collate([(0, HEADLINE)]))
    logits, maps = attention_maps(transformer, ids, padding)
    same = torch.allclose(logits, transformer(ids, padding), atol=1e-5)
    topic = CLASSES[logits.argmax(1).item()]
    tokens = [word if word in vocab else f"{word} (<unk>)" for word in tokenizer(HEADLINE)]
    print(f"{HEADLINE!r} -> {topic}; the hand-written copies give the same logits: {same}")
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(16, 4.8))
    for number, (ax, weights) in enumerate(zip(axes, maps), start=1):
        ax.imshow(weights.mean(0).numpy(), cmap="viridis", vmin=0)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90)
        ax.set_yticks(range(len(tokens)), tokens)
        ax.set(title=f"layer {number}, mean of {len(weights)} heads", xlabel="key", ylabel="query")
    for name, history in histories.items():
        axes[-1].plot(range(1, args.epochs + 1), history["accuracy"], marker="o", label=name)
        print(f"{name:>11}: test accuracy {history['accuracy'][-1]:.4f}, "
              f"{sum(history['seconds']):.1f} s of training")  # fmt: skip
    axes[-1].set(xlabel="epoch", ylabel="test accuracy", title=source,
                 xticks=range(1, args.epochs + 1))  # fmt: skip
    axes[-1].legend()
    save_figure(fig, args.out / "attention_and_accuracy.png")

    metrics = {"transformer_accuracy": histories["transformer"]["accuracy"][-1],
               "data_source": source, "train_rows": len(train_rows), "test_rows": len(test_rows),
               "vocab_size": len(vocab), "norms": norms, "layer_differences": layer_differences,
               "headline_topic": topic}  # fmt: skip
    for name, history in histories.items():  # fasttext_accuracy, fasttext_loss_history, ...
        metrics[f"{name}_accuracy"] = history["accuracy"][-1]
        metrics |= {f"{name}_{key}_history": values for key, values in history.items()}
    write_metrics(args.out, metrics, headline="transformer_accuracy")
