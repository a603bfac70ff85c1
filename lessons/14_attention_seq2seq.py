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

# %% Imports
from __future__ import annotations

import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from common.cli import lesson_args
from common.report import save_figure, write_metrics

LESSON = Path(__file__).stem

# The toy parallel corpus of the source notes, and its two vocabularies.
PAD, SOS, EOS = "<PAD>", "<SOS>", "<EOS>"
PAIRS = [("hello world", "bonjour monde"), ("hello", "bonjour")]
SOURCE_VOCAB = {PAD: 0, SOS: 1, EOS: 2, "hello": 3, "world": 4}
TARGET_VOCAB = {PAD: 0, SOS: 1, EOS: 2, "bonjour": 3, "monde": 4}
TARGET_WORDS = {i: w for w, i in TARGET_VOCAB.items()}


# %% 1. Scaled dot-product attention by hand
def attention_by_hand(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V. `mask` is boolean, True = "this key may be attended to"
    (the convention of F.scaled_dot_product_attention)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # [queries, keys] similarities
    if mask is not None:
        # a masked key gets -inf, so softmax gives it exactly zero weight
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # each query's row becomes a probability distribution
    return weights @ v, weights


def scaled_dot_product(seed: int) -> dict:
    print("\n# 1. Scaled dot-product attention by hand (Q, K, V of 3 x 2)")
    g = torch.Generator().manual_seed(seed)  # its own generator: the same numbers every run
    q, k, v = (torch.randn(3, 2, generator=g) for _ in range(3))
    # A causal mask: query i may look at keys 0..i only (what a decoder uses so it cannot
    # peek at future words). True = take part, False = masked out.
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    print(f"  mask (True = may attend):\n{mask}")
    out, weights = attention_by_hand(q, k, v, mask)
    print(f"  attention weights:\n{weights}")
    print(f"  output:\n{out}")

    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    same_masked = torch.allclose(out, reference, atol=1e-6)
    unmasked = torch.allclose(
        attention_by_hand(q, k, v)[0], F.scaled_dot_product_attention(q, k, v), atol=1e-6
    )
    # The same mask as numbers: 0 where allowed, -inf where not, ADDED to the scores.
    additive = torch.zeros(3, 3).masked_fill(~mask, float("-inf"))
    same_additive = torch.allclose(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=additive), atol=1e-6
    )
    row_sums = weights.sum(dim=-1)
    rows_sum_to_one = torch.allclose(row_sums, torch.ones(3))
    upper_zero = bool((weights[~mask] == 0).all())
    print(f"  equals F.scaled_dot_product_attention (bool mask): {same_masked}")
    print(f"  equals it with the additive float mask (0 / -inf): {same_additive}")
    print(f"  equals it without a mask: {unmasked}")
    print(f"  row sums: {row_sums.tolist()} -> every row sums to 1: {rows_sum_to_one}")
    print(f"  masked positions get weight exactly 0: {upper_zero}")
    return {
        "sdpa_matches_masked": same_masked,
        "sdpa_matches_unmasked": unmasked,
        "sdpa_matches_additive_mask": same_additive,
        "attention_rows_sum_to_one": rows_sum_to_one,
        "masked_weights_zero": upper_zero,
    }


# %% 2. nn.MultiheadAttention and self-attention
def multi_head(seed: int) -> dict:
    print("\n# 2. nn.MultiheadAttention (embed 8, 2 heads, batch 2, target 4, source 5)")
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
    query = torch.randn(2, 4, 8)  # [batch, target length, embed]
    memory = torch.randn(2, 5, 8)  # keys and values: [batch, source length, embed]
    out, weights = mha(query, memory, memory)
    print(f"  query {list(query.shape)}, key = value {list(memory.shape)}")
    print(f"  output {list(out.shape)} (one vector per query), weights {list(weights.shape)}")
    print("  (weights averaged over the heads: [batch, target, source])")
    _, per_head = mha(query, memory, memory, average_attn_weights=False)
    print(f"  average_attn_weights=False -> {list(per_head.shape)} [batch, heads, target, source]")

    # Self-attention: every position of one sequence attends to every position of the same one.
    x = torch.randn(2, 5, 8)
    self_out, self_weights = mha(x, x, x)
    # key_padding_mask uses the OPPOSITE convention to SDPA: True = "padding, ignore this key".
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    _, padded_weights = mha(x, x, x, key_padding_mask=padding)
    ignored = bool((padded_weights[1, :, 3:] == 0).all())
    print(
        f"  self-attention (Q = K = V = x {list(x.shape)}): output {list(self_out.shape)}, "
        f"weights {list(self_weights.shape)}"
    )
    print(f"  key_padding_mask (True = ignore): padded keys get weight 0: {ignored}")
    return {
        "mha_output_shape": list(out.shape),
        "mha_weights_shape": list(weights.shape),
        "mha_per_head_weights_shape": list(per_head.shape),
        "self_attention_output_shape": list(self_out.shape),
        "self_attention_weights_shape": list(self_weights.shape),
        "key_padding_ignored": ignored,
    }


# %% 3. The LSTM encoder-decoder
def to_indices(sentence: str, vocab: dict) -> list[int]:
    return [vocab[word] for word in sentence.split()]


def pad(sequences: list[list[int]]) -> torch.Tensor:
    """Right-pad with <PAD> (index 0) to the longest sequence: [batch, max length]."""
    longest = max(map(len, sequences))
    return torch.tensor([s + [SOURCE_VOCAB[PAD]] * (longest - len(s)) for s in sequences])


class Encoder(nn.Module):
    """Reads the source sentence; its final (h, c) summarises it for the decoder."""

    def __init__(self, vocab_size, hidden_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=0)
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)

    def forward(self, source, lengths):
        # Packing makes the LSTM stop at each sentence's real end, so the padding of the
        # short sentence does not leak into its final state.
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


def make_batch(device):
    """Source: words + <EOS>. Decoder input: <SOS> + words. Decoder target: words + <EOS>."""
    sources = [[*to_indices(s, SOURCE_VOCAB), SOURCE_VOCAB[EOS]] for s, _ in PAIRS]
    targets = [to_indices(t, TARGET_VOCAB) for _, t in PAIRS]
    decoder_in = pad([[TARGET_VOCAB[SOS], *t] for t in targets])
    decoder_out = pad([[*t, TARGET_VOCAB[EOS]] for t in targets])
    lengths = torch.tensor([len(s) for s in sources])  # stays on the CPU (packing wants that)
    return pad(sources).to(device), lengths, decoder_in.to(device), decoder_out.to(device)


def train_seq2seq(encoder, decoder, epochs, device) -> list[float]:
    source, lengths, decoder_in, decoder_out = make_batch(device)
    print(
        f"  source {source.tolist()}, decoder input {decoder_in.tolist()}, "
        f"decoder target {decoder_out.tolist()}"
    )
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.01)
    criterion = nn.CrossEntropyLoss(ignore_index=TARGET_VOCAB[PAD])  # padding costs nothing
    history = []
    for epoch in range(1, epochs + 1):
        state = encoder(source, lengths)
        # Teacher forcing: the decoder reads the TRUE previous word at every step (not its own
        # guess), so all steps are computed in one call and early mistakes do not snowball.
        scores, _ = decoder(decoder_in, state)
        loss = criterion(scores.reshape(-1, scores.size(-1)), decoder_out.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if epoch == 1 or epoch % max(1, epochs // 10) == 0 or epoch == epochs:
            print(f"  epoch {epoch:>4}/{epochs}: loss {loss.item():.4f}")
    return history


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
        scores, state = decoder(word, state)  # one step at a time now: no true words to read
        word = scores.argmax(dim=-1)  # [1, 1], the most likely next word
        if word.item() == TARGET_VOCAB[EOS]:
            break
        result.append(TARGET_WORDS[word.item()])
    return " ".join(result)


def plot_loss(history, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(history) + 1), history)
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="LSTM seq2seq")
    save_figure(fig, out / "seq2seq_loss.png")


# %% Run the lesson
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON, epochs=200, batch_size=2)
    epochs = min(args.epochs, 100) if args.quick else args.epochs  # quick: fewer steps
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these models are tiny: more CPU threads only add overhead
    try:
        metrics = scaled_dot_product(args.seed)  # demos on the CPU: a few numbers each
        metrics |= multi_head(args.seed)

        print(f"\n# 3. LSTM encoder-decoder, {epochs} epochs (Adam lr 0.01, hidden 32)")
        encoder = Encoder(len(SOURCE_VOCAB), 32).to(args.device)
        decoder = Decoder(len(TARGET_VOCAB), 32).to(args.device)
        start = time.perf_counter()
        history = train_seq2seq(encoder, decoder, epochs, args.device)
        seconds = time.perf_counter() - start
        print(f"  trained in {seconds:.2f} s")
        encoder.eval()
        decoder.eval()
        translations = {src: translate(encoder, decoder, src, args.device) for src, _ in PAIRS}
    finally:
        torch.set_num_threads(threads)

    print("\nGreedy decoding:")
    for src, expected in PAIRS:
        got = translations[src]
        print(f"  {src!r:>14} -> {got!r:<16} (expected {expected!r}: {got == expected})")
    exact = all(translations[src] == tgt for src, tgt in PAIRS)
    plot_loss(history, args.out)
    metrics |= {
        "all_translations_exact": exact,
        "translations": translations,
        "seq2seq_loss_history": history,
        "final_loss": history[-1],
        "train_seconds": seconds,
        "data": "toy sentence pairs",
    }
    write_metrics(args.out, metrics, headline="all_translations_exact")
    return metrics


if __name__ == "__main__":
    main()
