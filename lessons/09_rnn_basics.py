"""Recurrent networks: RNNCell, nn.RNN, the recurrence by hand, hello -> ohlol, GRU and LSTM.

What you will learn
  - what an RNNCell does to one time step and what nn.RNN does to a whole sequence (shapes of the
    input, the output and the hidden state; batch_first; stacked layers)
  - the recurrence h_t = tanh(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh), computed by hand with the
    layer's own weights, gives exactly the layer's output
  - teaching a network to turn "hello" into "ohlol" three ways: one-hot + RNNCell, one-hot +
    nn.RNN, and Embedding + 2-layer RNN + Linear
  - the gates of a GRU and an LSTM, and their shapes with num_layers x num_directions

How to run
    python lessons/09_rnn_basics.py               # the whole lesson (seconds)
    python lessons/09_rnn_basics.py --epochs 30   # train each hello -> ohlol model longer
    python lessons/09_rnn_basics.py --quick       # the same (it is already tiny)
Open the file in VS Code or Jupyter to run it cell by cell (`# %%` marks the cells).

Time: --quick ~4 s, full ~4 s on a 2-core CPU.
"""

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from common.cli import lesson_args
from common.report import save_figure, write_metrics

if __name__ == "__main__":  # true in a script and in a notebook, false when a test imports us
    # The models are tiny: one CPU thread beats many here (--threads or LESSONS_THREADS override).
    args = lesson_args(__doc__, name="09_rnn_basics", epochs=15, batch_size=1, threads=1)
    device = args.device

# %% [markdown]
# ## 1. One step, or the whole sequence
# An `nn.RNNCell` computes one time step: from this step's input $x_t$ (batch × input size) and
# the previous hidden state $h_{t-1}$ (batch × hidden size) it makes the new state $h_t$; the
# loop over time is ours to write. `nn.RNN` runs that loop itself over a whole sequence shaped
# (seq, batch, input), or (batch, seq, input) with `batch_first=True`. It returns `output`, the
# last layer's $h_t$ at **every** step, and `h_n`, **every** layer's last state, shaped
# (num_layers, batch, hidden) whatever `batch_first` says. With `num_layers=2` the second layer
# reads the first layer's outputs as its inputs.


# %%
def rnn_shapes() -> dict[str, list[int]]:
    """Shapes for batch 1, sequence 3, input 4, hidden 2."""
    sequence = torch.randn(3, 1, 4)  # (seq, batch, features): the default layout
    cell = nn.RNNCell(input_size=4, hidden_size=2)
    hidden = torch.zeros(1, 2)  # h_0
    for x_t in sequence:  # we write the loop over time ourselves
        hidden = cell(x_t, hidden)  # input [1, 4] and hidden [1, 2] -> new hidden [1, 2]
    output, h_n = nn.RNN(input_size=4, hidden_size=2)(sequence)  # h_0 defaults to zeros
    batch_first = sequence.transpose(0, 1)  # (batch, seq, features)
    out_bf, h_bf = nn.RNN(4, 2, batch_first=True)(batch_first)
    out_deep, h_deep = nn.RNN(4, 2, num_layers=2)(sequence)
    return {
        "cell_input": list(x_t.shape),
        "cell_hidden": list(hidden.shape),
        "rnn_output": list(output.shape),
        "rnn_hidden": list(h_n.shape),
        "batch_first_input": list(batch_first.shape),
        "batch_first_output": list(out_bf.shape),
        "batch_first_hidden": list(h_bf.shape),
        "two_layer_output": list(out_deep.shape),
        "two_layer_hidden": list(h_deep.shape),
    }


if __name__ == "__main__":
    shapes = s = rnn_shapes()
    print(f"RNNCell, each of 3 steps: input {s['cell_input']} -> hidden {s['cell_hidden']}")
    print(f"nn.RNN: output {s['rnn_output']} (seq, batch, hidden), hidden {s['rnn_hidden']}")
    print(f"batch_first=True: input {s['batch_first_input']} -> output "
          f"{s['batch_first_output']}, hidden {s['batch_first_hidden']}")  # fmt: skip
    print(f"num_layers=2: output {s['two_layer_output']}, hidden {s['two_layer_hidden']}")

# %% [markdown]
# ## 2. The recurrence by hand
# Every step applies the same two weight matrices:
# $$h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}).$$
# Reusing one set of weights at every step is what makes the network *recurrent*, and it lets
# one layer read sequences of any length. Below, the formula with the layer's own weights
# gives exactly what `nn.RNN` returns.


# %%
def recurrence_by_hand(rnn: nn.RNN, x: torch.Tensor) -> torch.Tensor:
    """The formula above, step by step, with a one-layer `rnn`'s weights: [seq, batch, hidden]."""
    h = torch.zeros(x.size(1), rnn.hidden_size)  # h_0
    steps = []
    for x_t in x:  # x_t: [batch, input]
        h = torch.tanh(
            x_t @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        )
        steps.append(h)
    return torch.stack(steps)


if __name__ == "__main__":
    rnn = nn.RNN(input_size=4, hidden_size=2)
    x = torch.randn(3, 1, 4)
    with torch.no_grad():
        by_hand, (layer_output, _) = recurrence_by_hand(rnn, x), rnn(x)
    print(f"W_ih {list(rnn.weight_ih_l0.shape)}, W_hh {list(rnn.weight_hh_l0.shape)}: "
          "the same two matrices at every step")  # fmt: skip
    print(f"by hand:\n{by_hand.squeeze(1)}\nnn.RNN:\n{layer_output.squeeze(1)}")
    recurrence_matches = torch.allclose(by_hand, layer_output, atol=1e-6)
    print(f"torch.allclose(by hand, nn.RNN output): {recurrence_matches}")

# %% [markdown]
# ## 3. The task: "hello" -> "ohlol"
# Read "hello" one character at a time and emit "ohlol". The alphabet has four letters, so each
# step is a 4-class classification: the input is a character (an index, or its one-hot vector)
# and the label is the character to emit. `nn.CrossEntropyLoss` scores each step; the loss of
# the word is the sum (or mean) over its five steps.

# %%
IDX2CHAR = ["e", "h", "l", "o"]  # the 4-letter alphabet
CHAR2IDX = {c: i for i, c in enumerate(IDX2CHAR)}
SOURCE, TARGET = "hello", "ohlol"


def encode(text: str) -> torch.Tensor:
    """Characters -> class indices, e.g. "hello" -> [1, 0, 2, 2, 3]."""
    return torch.tensor([CHAR2IDX[c] for c in text])


def decode(indices) -> str:
    return "".join(IDX2CHAR[i] for i in indices)


if __name__ == "__main__":
    one_hot = nn.functional.one_hot(encode(SOURCE), 4).float()  # [5, 4]
    print(f"{SOURCE!r} -> {encode(SOURCE).tolist()}, {TARGET!r} -> {encode(TARGET).tolist()}")
    print(f"one-hot 'hello' (one row per step):\n{one_hot}")

# %% [markdown]
# ## 4. Way 1: one-hot + RNNCell, stepped by hand (Adam, lr 0.1)
# We loop over the five characters, feed each one-hot vector and the running hidden state to the
# cell, and add up one loss per step. `loss.backward()` then sends gradients back through all
# five steps: *back-propagation through time*. A Linear "head" turns each hidden state into four
# class scores.


# %%
class CellModel(nn.Module):
    """One RNNCell (hidden 8) stepped by hand, then a Linear layer to the 4 class scores."""

    # The notes read a hidden state of size 4 directly as the class scores. tanh squeezes those
    # scores into [-1, 1] and training misses "ohlol" on some seeds (it stalls at "ohlll"); a
    # Linear head on a hidden state of 8 learns the task from every seed we tried.
    def __init__(self, hidden_size=8):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.RNNCell(input_size=4, hidden_size=hidden_size)
        self.fc = nn.Linear(hidden_size, len(IDX2CHAR))

    def forward(self, x_t, hidden):
        hidden = self.cell(x_t, hidden)  # [1, 4] one-hot + [1, 8] -> new hidden [1, 8]
        return self.fc(hidden), hidden  # scores for this step, the state for the next


def train_cell(model, inputs, labels, epochs, lr=0.1) -> tuple[list[float], list[str]]:
    """inputs [5, 1, 4] one-hot, labels [5, 1]; returns each epoch's loss and prediction."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, predictions = [], []
    for _ in range(epochs):
        hidden = torch.zeros(1, model.hidden_size, device=inputs.device)
        loss, chars = 0.0, []
        for x_t, label in zip(inputs, labels):
            scores, hidden = model(x_t, hidden)
            loss = loss + loss_fn(scores, label)  # keep the graph: no .item() here
            chars.append(scores.argmax(dim=1).item())
        optimizer.zero_grad()
        loss.backward()  # back-propagation through time, over all 5 steps
        optimizer.step()
        losses.append(loss.item())
        predictions.append(decode(chars))
    return losses, predictions


def show_training(losses: list[float], predictions: list[str]) -> None:
    """Each epoch's prediction for "hello" and its loss, five epochs to a line."""
    for first in range(0, len(losses), 5):
        epochs = zip(predictions[first : first + 5], losses[first : first + 5])
        row = " | ".join(f"{predicted} {loss:.3f}" for predicted, loss in epochs)
        print(f"epochs {first + 1:>2}-{min(first + 5, len(losses)):>2}: {row}")


if __name__ == "__main__":
    inputs = one_hot.view(5, 1, 4).to(device)  # [seq, batch, 4]: one step at a time
    labels = encode(TARGET).view(5, 1).to(device)  # one label per step
    cell_model = CellModel().to(device)
    cell_losses, cell_predictions = train_cell(cell_model, inputs, labels, args.epochs)
    print("one-hot + RNNCell, Adam lr 0.1: each epoch's prediction for 'hello' and its loss")
    show_training(cell_losses, cell_predictions)

# %% [markdown]
# ## 5. Way 2: one-hot + nn.RNN (Adam, lr 0.05)
# `nn.RNN` takes the whole sequence in one call and returns the hidden state of every step,
# [5, 1, 8]; the Linear head maps each to scores, [5, 4], and one `CrossEntropyLoss` call takes
# the mean over the five steps. The training loop is the plain one of every lesson.


# %%
class SeqModel(nn.Module):
    """nn.RNN over the whole one-hot sequence, then the same kind of Linear head."""

    def __init__(self, hidden_size=8):
        super().__init__()
        self.rnn = nn.RNN(input_size=4, hidden_size=hidden_size)
        self.fc = nn.Linear(hidden_size, len(IDX2CHAR))

    def forward(self, x):  # x: [seq, batch, 4]
        out, _ = self.rnn(x)  # h_0 defaults to zeros; out: [seq, batch, hidden]
        return self.fc(out).reshape(-1, len(IDX2CHAR))  # [seq * batch, classes]


def train_sequence(model, X, y, epochs, lr) -> tuple[list[float], list[str]]:
    """The whole sequence per step: returns each epoch's loss and prediction."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, predictions = [], []
    for _ in range(epochs):
        scores = model(X)  # [5, 4]
        loss = loss_fn(scores, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        predictions.append(decode(scores.argmax(dim=1).tolist()))
    return losses, predictions


if __name__ == "__main__":
    X, y = inputs, encode(TARGET).to(device)  # [5, 1, 4] one-hot and 5 labels
    rnn_model = SeqModel().to(device)
    rnn_losses, rnn_predictions = train_sequence(rnn_model, X, y, args.epochs, lr=0.05)
    print("one-hot + nn.RNN, Adam lr 0.05:")
    show_training(rnn_losses, rnn_predictions)

# %% [markdown]
# ## 6. Way 3: Embedding + 2-layer RNN + Linear (Adam, lr 0.05)
# A one-hot vector is a lookup in disguise: multiplying it by a matrix picks one row.
# `nn.Embedding(4, 10)` keeps that matrix as learnable rows of 10 numbers and takes the indices
# directly. Here the input is [batch 1, seq 5] of indices and the RNN is `batch_first`.


# %%
class EmbeddingModel(nn.Module):
    """Embedding (index -> dense vector) + 2-layer RNN + Linear to the 4 classes."""

    def __init__(self, embedding_size=10, hidden_size=8, num_layers=2):
        super().__init__()
        self.emb = nn.Embedding(len(IDX2CHAR), embedding_size)  # replaces the one-hot lookup
        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, len(IDX2CHAR))

    def forward(self, x):  # x: [batch, seq] of indices
        out, _ = self.rnn(self.emb(x))  # [batch, seq, hidden]
        return self.fc(out).reshape(-1, len(IDX2CHAR))


if __name__ == "__main__":
    X = encode(SOURCE).view(1, 5).to(device)  # [batch 1, seq 5] of indices
    embedding_model = EmbeddingModel().to(device)
    emb_losses, emb_predictions = train_sequence(embedding_model, X, y, args.epochs, lr=0.05)
    print("Embedding + 2-layer RNN + Linear, Adam lr 0.05:")
    show_training(emb_losses, emb_predictions)

# %% [markdown]
# ## 7. GRU and LSTM: gates
# A plain RNN forgets quickly and its gradients shrink over long sequences. Gates, sigmoids
# $\sigma$ between 0 and 1 multiplied element-wise ($\odot$), decide what to keep. A **GRU**:
# reset gate $r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})$, update gate
# $z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})$, candidate
# $n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))$ and
# $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$.
# PyTorch's GRU puts $z$ on $h_{t-1}$, as written here; the notes (Cho et al.) put $z$ on the
# candidate, $h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t$: the same model with $z$ and
# $1 - z$ swapped.
#
# An **LSTM** adds a cell state $c_t$ that gradients flow along easily: input gate
# $i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi})$, forget gate $f_t$ and output
# gate $o_t$ (the same form), candidate $g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} +
# b_{hg})$, then $c_t = f_t \odot c_{t-1} + i_t \odot g_t$ and $h_t = o_t \odot \tanh(c_t)$.
#
# With `bidirectional=True` a second RNN reads the sequence backwards; `output` concatenates
# both directions (2 × hidden per step) and `h_n` stacks num_layers × num_directions states.


# %%
def gru_lstm_shapes() -> dict[str, list[int]]:
    """Sequence 3, batch 1, input 4, hidden 2, 2 layers, bidirectional."""
    x = torch.randn(3, 1, 4)
    gru = nn.GRU(4, 2, num_layers=2, bidirectional=True)
    lstm = nn.LSTM(4, 2, num_layers=2, bidirectional=True)
    out_gru, h_gru = gru(x)
    out_lstm, (h_lstm, c_lstm) = lstm(x)  # an LSTM's state is the pair (h, c)
    return {
        "GRU output (seq, batch, directions*hidden)": list(out_gru.shape),
        "GRU h_n (layers*directions, batch, hidden)": list(h_gru.shape),
        "LSTM output": list(out_lstm.shape),
        "LSTM h_n": list(h_lstm.shape),
        "LSTM c_n": list(c_lstm.shape),
        "GRU weight_ih_l0 (3 gates x hidden, input)": list(gru.weight_ih_l0.shape),
        "LSTM weight_ih_l0 (4 gates x hidden, input)": list(lstm.weight_ih_l0.shape),
    }


if __name__ == "__main__":
    gate_shapes = gru_lstm_shapes()
    for label, shape in gate_shapes.items():
        print(f"{label}: {shape}")

# %% [markdown]
# ## 8. Results
# All three ways end predicting "ohlol"; the curves show how fast each one gets there.

# %%
if __name__ == "__main__":
    histories = {"RNNCell": cell_losses, "nn.RNN": rnn_losses, "Embedding + RNN": emb_losses}
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, history in histories.items():
        ax.plot(range(1, len(history) + 1), history, marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="hello -> ohlol")
    ax.legend()
    save_figure(fig, args.out / "hello_ohlol_loss.png")

    predictions = {
        "rnncell": cell_predictions[-1],
        "rnn": rnn_predictions[-1],
        "embedding": emb_predictions[-1],
    }
    for label, predicted in predictions.items():
        print(f"final prediction ({label}): {predicted}")
    metrics = {
        "all_ohlol": all(p == TARGET for p in predictions.values()),
        "predictions": predictions,
        "recurrence_matches_layer": recurrence_matches,
        "shapes": shapes,
        "gate_shapes": gate_shapes,
        "rnncell_loss_history": cell_losses,
        "rnn_loss_history": rnn_losses,
        "embedding_loss_history": emb_losses,
        "data": "toy string hello -> ohlol",
    }
    write_metrics(args.out, metrics, headline="all_ohlol")
