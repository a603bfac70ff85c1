"""Attention and sequence-to-sequence: attention by hand, multi-head attention, an LSTM translator.

What you will learn
  - scaled dot-product attention softmax(Q K^T / sqrt(d)) V written out by hand, with a mask,
    and that it equals F.scaled_dot_product_attention (mind the mask convention!)
  - why every row of attention weights sums to 1 (a weighted average of the values)
  - nn.MultiheadAttention: input/output shapes, per-head weights, self-attention (Q = K = V)
  - an LSTM encoder-decoder that learns toy translations (hello world -> bonjour monde) with
    <SOS>/<EOS>/<PAD> tokens, teacher forcing while training, and greedy decoding afterwards

How to run
    python lessons/14_attention_seq2seq.py                # the whole lesson (seconds)
    python lessons/14_attention_seq2seq.py --epochs 300   # train the translator longer
    python lessons/14_attention_seq2seq.py --quick        # fewer training steps
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~5 s, full ~5 s on a 2-core CPU.
"""

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from common.cli import lesson_args
from common.report import save_figure, write_metrics

if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    # The models are tiny: one CPU thread beats many here (--threads or LESSONS_THREADS override).
    args = lesson_args(__doc__, name="14_attention_seq2seq", epochs=200, batch_size=2, threads=1)
    device = args.device
    epochs = min(args.epochs, 100) if args.quick else args.epochs  # --quick: fewer steps

# %% [markdown]
# ## 1. Scaled dot-product attention by hand
# Each query $q_i$ scores every key $k_j$ by a dot product, scaled by $\sqrt{d_k}$ so the scores
# do not grow with the dimension; a softmax over the keys turns query $i$'s scores into weights
# that are positive and **sum to 1**, and the output is that weighted average of the values:
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V.$$
# A mask removes keys: a masked score becomes $-\infty$, so its weight is exactly 0. A causal
# mask lets query $i$ see keys $0..i$ only, as a decoder that must not peek at later words.
# Mind the conventions: a boolean `attn_mask` of `F.scaled_dot_product_attention` means
# True = *may attend*; a float mask is *added* to the scores (0 or $-\infty$).


# %%
def attention_by_hand(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V and the weights. `mask`: boolean, True = may attend."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # [queries, keys] similarities
    if mask is not None:
        # The notes fill masked scores with -9e15; -inf gives exactly zero weight after softmax.
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # each query's row becomes a probability distribution
    return weights @ v, weights


def compare_with_sdpa(q, k, v, mask) -> dict[str, bool]:
    """The hand version against F.scaled_dot_product_attention, and two facts about weights."""
    out, weights = attention_by_hand(q, k, v, mask)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))  # the same mask, added
    sdpa = F.scaled_dot_product_attention
    return {
        "equals F.scaled_dot_product_attention (bool mask)": torch.allclose(
            out, sdpa(q, k, v, attn_mask=mask), atol=1e-6
        ),
        "equals it with the additive float mask (0 / -inf)": torch.allclose(
            out, sdpa(q, k, v, attn_mask=additive), atol=1e-6
        ),
        "equals it without a mask": torch.allclose(
            attention_by_hand(q, k, v)[0], sdpa(q, k, v), atol=1e-6
        ),
        "every row of weights sums to 1": torch.allclose(weights.sum(-1), torch.ones(len(q))),
        "masked positions get weight exactly 0": bool((weights[~mask] == 0).all()),
    }


if __name__ == "__main__":
    g = torch.Generator().manual_seed(args.seed)  # its own generator: the same numbers every run
    q, k, v = (torch.randn(3, 2, generator=g) for _ in range(3))  # 3 positions, d_k = 2
    mask = torch.ones(3, 3, dtype=torch.bool).tril()  # causal: query i sees keys 0..i
    out, weights = attention_by_hand(q, k, v, mask)
    print(f"Q:\n{q}\nK:\n{k}\nV:\n{v}\nmask (True = may attend):\n{mask}")
    print(f"attention weights:\n{weights}\noutput:\n{out}")
    print(f"row sums: {weights.sum(-1).tolist()}")
    attention_checks = compare_with_sdpa(q, k, v, mask)
    for label, same in attention_checks.items():
        print(f"{label}: {same}")

# %% [markdown]
# ## 2. nn.MultiheadAttention
# Multi-head attention projects queries, keys and values with learned matrices, splits the
# `embed_dim` numbers into `num_heads` pieces, runs the attention above in every head at once
# and projects the concatenated heads back to `embed_dim`:
# $\mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h) W^O$.
# The output has one vector per query; the weights have one row per query and one column per
# key, averaged over the heads unless `average_attn_weights=False`.


# %%
def multi_head_shapes() -> dict[str, list[int]]:
    """embed 8, 2 heads, batch 2, 4 queries (target), 5 keys = values (source)."""
    mha = nn.MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
    query = torch.randn(2, 4, 8)  # [batch, target length, embed]
    memory = torch.randn(2, 5, 8)  # keys and values: [batch, source length, embed]
    out, weights = mha(query, memory, memory)
    _, per_head = mha(query, memory, memory, average_attn_weights=False)
    return {
        "output [batch, target, embed]": list(out.shape),
        "weights [batch, target, source]": list(weights.shape),
        "per-head weights [batch, heads, target, source]": list(per_head.shape),
    }


if __name__ == "__main__":
    mha_shapes = multi_head_shapes()
    print("query [2, 4, 8], key = value [2, 5, 8]:")
    for label, shape in mha_shapes.items():
        print(f"{label}: {shape}")

# %% [markdown]
# ## 3. Self-attention and padding
# In **self-attention** a sequence attends to itself, $Q = K = V = x$: every position gathers
# information from every other position of the same sequence, and the weights are square.
# Sentences in a batch have different lengths, so the short ones are padded; `key_padding_mask`
# hides those keys. It uses the **opposite** convention to the boolean mask of section 1:
# True = *padding, ignore this key*.


# %%
def self_attention(x: torch.Tensor, padding: torch.Tensor) -> dict:
    """Self-attention over x [batch, seq, 8] with 2 heads; `padding` [batch, seq], True = pad."""
    mha = nn.MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
    out, weights = mha(x, x, x)
    _, padded_weights = mha(x, x, x, key_padding_mask=padding)
    return {
        "output": list(out.shape),
        "weights": list(weights.shape),
        # padded_weights: [batch, query, key]; the columns of the padded keys must be all 0
        "padded keys get weight 0": bool((padded_weights.transpose(1, 2)[padding] == 0).all()),
    }


if __name__ == "__main__":
    x = torch.randn(2, 5, 8)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])  # 2nd: 3 words
    self_attention_result = self_attention(x, padding)
    print(f"self-attention, Q = K = V = x {list(x.shape)}:")
    for label, value in self_attention_result.items():
        print(f"{label}: {value}")

# %% [markdown]
# ## 4. The toy corpus as tensors
# Two sentence pairs and a vocabulary of five tokens per language: `<PAD>` (0) fills short
# sentences up to the longest, `<SOS>` (1) starts the decoder off and `<EOS>` (2) marks the end
# of a sentence, so the decoder can say "I am done". The source is *words + `<EOS>`*; the
# decoder reads *`<SOS>` + words* and must predict the same words shifted by one,
# *words + `<EOS>`*.

# %%
PAD, SOS, EOS = "<PAD>", "<SOS>", "<EOS>"
PAIRS = [("hello world", "bonjour monde"), ("hello", "bonjour")]
SOURCE_VOCAB = {PAD: 0, SOS: 1, EOS: 2, "hello": 3, "world": 4}
TARGET_VOCAB = {PAD: 0, SOS: 1, EOS: 2, "bonjour": 3, "monde": 4}
TARGET_WORDS = {i: w for w, i in TARGET_VOCAB.items()}


def to_indices(sentence: str, vocab: dict) -> list[int]:
    return [vocab[word] for word in sentence.split()]


def pad(sequences: list[list[int]]) -> torch.Tensor:
    """Right-pad with <PAD> (index 0) to the longest sequence: [batch, max length]."""
    longest = max(map(len, sequences))
    return torch.tensor([s + [SOURCE_VOCAB[PAD]] * (longest - len(s)) for s in sequences])


def make_batch(device):
    """(source, source lengths, decoder input, decoder target), padded, one row per pair."""
    # The notes wrap every sentence, targets included, in <SOS> ... <EOS>. Here <SOS> goes only
    # on the decoder's input, the standard layout: the decoder is never asked to predict <SOS>.
    sources = [[*to_indices(s, SOURCE_VOCAB), SOURCE_VOCAB[EOS]] for s, _ in PAIRS]
    targets = [to_indices(t, TARGET_VOCAB) for _, t in PAIRS]
    decoder_in = pad([[TARGET_VOCAB[SOS], *t] for t in targets])
    decoder_out = pad([[*t, TARGET_VOCAB[EOS]] for t in targets])
    lengths = torch.tensor([len(s) for s in sources])  # stays on the CPU (packing wants that)
    return pad(sources).to(device), lengths, decoder_in.to(device), decoder_out.to(device)


if __name__ == "__main__":
    source, lengths, decoder_in, decoder_out = make_batch(device)
    print(f"source {source.tolist()} (lengths {lengths.tolist()})")
    print(f"decoder input {decoder_in.tolist()}, decoder target {decoder_out.tolist()}")

# %% [markdown]
# ## 5. An LSTM encoder and decoder
# The **encoder** reads the source; its final LSTM state $(h, c)$ is the summary the decoder
# starts from. *Packing* the padded batch makes the LSTM stop at each sentence's real end, so
# padding does not leak into the short sentence's state. The **decoder** is an LSTM language
# model over the target words: previous word in, scores for the next word out.


# %%
class Encoder(nn.Module):
    """Reads the source sentence; its final (h, c) summarises it for the decoder."""

    def __init__(self, vocab_size, hidden_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=0)
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)

    def forward(self, source, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(source), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h, c) = self.lstm(packed)
        return h, c


class Decoder(nn.Module):
    """Predicts the next target word from the previous one and its (h, c) state."""

    def __init__(self, vocab_size, hidden_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=0)
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, previous, state):  # previous: [batch, steps] of word indices
        output, state = self.lstm(F.relu(self.embedding(previous)), state)
        return self.out(output), state  # scores [batch, steps, vocab]


if __name__ == "__main__":
    encoder = Encoder(len(SOURCE_VOCAB), 32).to(device)
    decoder = Decoder(len(TARGET_VOCAB), 32).to(device)
    h, c = encoder(source, lengths)
    print(f"encoder state: h {list(h.shape)}, c {list(c.shape)} (layers, batch, hidden)")
    print(f"decoder scores: {list(decoder(decoder_in, (h, c))[0].shape)} (batch, steps, vocab)")

# %% [markdown]
# ## 6. Training with teacher forcing
# While training, the decoder reads the **true** previous word at every step rather than its
# own guess (*teacher forcing*): all steps run in one call, and an early mistake does not
# snowball. `CrossEntropyLoss(ignore_index=0)` makes `<PAD>` positions cost nothing.


# %%
def train_seq2seq(encoder, decoder, batch, epochs, lr=0.01) -> list[float]:
    """Adam on the whole (tiny) batch every step; returns the loss of every epoch."""
    # The notes step through one pair at a time with SGD (lr 0.01, hidden 256, NLLLoss on a
    # LogSoftmax). Here both pairs form one padded batch, trained by Adam (lr 0.01, hidden 32)
    # with CrossEntropyLoss, which is LogSoftmax + NLLLoss in one.
    source, lengths, decoder_in, decoder_out = batch
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=TARGET_VOCAB[PAD])  # padding costs nothing
    history = []
    for _ in range(epochs):
        state = encoder(source, lengths)
        scores, _ = decoder(decoder_in, state)  # teacher forcing: the true previous words
        loss = loss_fn(scores.reshape(-1, scores.size(-1)), decoder_out.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history


if __name__ == "__main__":
    print(f"{epochs} epochs, Adam lr 0.01, hidden 32")
    history = train_seq2seq(encoder, decoder, (source, lengths, decoder_in, decoder_out), epochs)
    step = max(1, epochs // 5)
    for epoch in sorted({1, *range(step, epochs + 1, step)}):
        print(f"epoch {epoch:>4}: loss {history[epoch - 1]:.5f}")

# %% [markdown]
# ## 7. Greedy decoding
# At translation time there are no true words to read. The decoder starts from `<SOS>` and the
# encoder's state, picks the most likely word, feeds it back as the next input, and stops at
# `<EOS>` (or after `max_length` words).


# %%
@torch.no_grad()
def translate(encoder, decoder, sentence: str, device, max_length: int = 10) -> str:
    """Greedy decoding: feed back the most likely word until <EOS> (or max_length words)."""
    words = sentence.split()
    if not words or any(w not in SOURCE_VOCAB for w in words):
        raise ValueError(f"cannot translate {sentence!r}: vocabulary is {list(SOURCE_VOCAB)[3:]}")
    source = torch.tensor([[*to_indices(sentence, SOURCE_VOCAB), SOURCE_VOCAB[EOS]]], device=device)
    state = encoder(source, torch.tensor([source.size(1)]))
    word, result = torch.tensor([[TARGET_VOCAB[SOS]]], device=device), []
    for _ in range(max_length):
        scores, state = decoder(word, state)  # one step at a time now
        word = scores.argmax(dim=-1)  # [1, 1], the most likely next word
        if word.item() == TARGET_VOCAB[EOS]:
            break
        result.append(TARGET_WORDS[word.item()])
    return " ".join(result)


if __name__ == "__main__":
    encoder.eval()
    decoder.eval()
    translations = {src: translate(encoder, decoder, src, device) for src, _ in PAIRS}
    for src, expected in PAIRS:
        got = translations[src]
        print(f"{src!r:>14} -> {got!r:<16} (expected {expected!r}: {got == expected})")

# %% [markdown]
# ## 8. Results
# The loss falls by orders of magnitude (a log scale shows it); both pairs are reproduced.

# %%
if __name__ == "__main__":
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(history) + 1), history)
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="LSTM seq2seq")
    save_figure(fig, args.out / "seq2seq_loss.png")

    metrics = {
        "all_translations_exact": all(translations[src] == tgt for src, tgt in PAIRS),
        "translations": translations,
        "attention_checks": attention_checks,
        "mha_shapes": mha_shapes,
        "self_attention": self_attention_result,
        "seq2seq_loss_history": history,
        "final_loss": history[-1],
        "epochs": epochs,
        "data": "toy sentence pairs",
    }
    write_metrics(args.out, metrics, headline="all_translations_exact")
