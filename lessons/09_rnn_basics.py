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

# %% Imports
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from common.cli import lesson_args
from common.report import ReferenceValues, save_figure, write_metrics

LESSON = Path(__file__).stem

# The toy task: read "hello" one character at a time and emit "ohlol".
IDX2CHAR = ["e", "h", "l", "o"]  # a 4-letter alphabet
CHAR2IDX = {c: i for i, c in enumerate(IDX2CHAR)}
SOURCE, TARGET = "hello", "ohlol"

# Reference values from CURRICULUM.md that this lesson reproduces, printed beside the value found
references = ReferenceValues()


def encode(text: str) -> torch.Tensor:
    """Characters -> class indices, e.g. "hello" -> [1, 0, 2, 2, 3]."""
    return torch.tensor([CHAR2IDX[c] for c in text])


def decode(indices) -> str:
    return "".join(IDX2CHAR[i] for i in indices)


# %% 1. Shapes: RNNCell works on one step, nn.RNN on the whole sequence
def shapes() -> dict:
    print("\n# 1. RNNCell and nn.RNN shapes (batch 1, sequence 3, input 4, hidden 2)")
    batch, seq_len, input_size, hidden_size = 1, 3, 4, 2
    cell = nn.RNNCell(input_size, hidden_size)
    sequence = torch.randn(seq_len, batch, input_size)  # (seq, batch, features): RNN default
    hidden = torch.zeros(batch, hidden_size)
    for t, x_t in enumerate(sequence):  # we write the loop over time ourselves
        hidden = cell(x_t, hidden)  # input [1, 4] -> new hidden [1, 2]
        print(f"  RNNCell step {t}: input {list(x_t.shape)} -> hidden {list(hidden.shape)}")
    cell_hidden = references.check("RNNCell hidden per step", list(hidden.shape), [1, 2])

    rnn = nn.RNN(input_size, hidden_size)  # nn.RNN runs the loop over time inside
    output, h_n = rnn(sequence, torch.zeros(1, batch, hidden_size))
    # output: the hidden state of the last layer at EVERY step; h_n: every layer's LAST state
    print(f"  nn.RNN: output {list(output.shape)} (seq, batch, hidden),")
    print(f"          hidden {list(h_n.shape)} (num_layers, batch, hidden)")
    references.check("nn.RNN output (seq, batch, hidden)", list(output.shape), [3, 1, 2])
    references.check("nn.RNN hidden (layers, batch, hidden)", list(h_n.shape), [1, 1, 2])

    first = nn.RNN(input_size, hidden_size, batch_first=True)  # (batch, seq, features) instead
    out_bf, h_bf = first(sequence.transpose(0, 1))
    print(
        f"  batch_first=True: input {list(sequence.transpose(0, 1).shape)} -> output "
        f"{list(out_bf.shape)}, hidden {list(h_bf.shape)} (hidden is never batch-first)"
    )

    deep = nn.RNN(input_size, hidden_size, num_layers=2)  # layer 2 reads layer 1's outputs
    out_deep, h_deep = deep(sequence)
    print(f"  num_layers=2: output {list(out_deep.shape)}, hidden {list(h_deep.shape)}")
    return {
        "rnncell_hidden_shape": cell_hidden,
        "rnn_output_shape": list(output.shape),
        "rnn_hidden_shape": list(h_n.shape),
        "batch_first_output_shape": list(out_bf.shape),
        "two_layer_hidden_shape": list(h_deep.shape),
    }


# %% 2. The recurrence by hand equals the layer
def recurrence_by_hand() -> bool:
    print("\n# 2. h_t = tanh(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh), by hand")
    rnn = nn.RNN(input_size=4, hidden_size=2)
    x = torch.randn(3, 1, 4)
    with torch.no_grad():
        expected, _ = rnn(x)
        h = torch.zeros(1, 2)  # h_0
        steps = []
        for x_t in x:  # x_t: [1, 4]
            h = torch.tanh(
                x_t @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
            )
            steps.append(h)
        by_hand = torch.stack(steps)  # [3, 1, 2], like the layer's output
    same = torch.allclose(by_hand, expected, atol=1e-6)
    print(f"  W_ih {list(rnn.weight_ih_l0.shape)}, W_hh {list(rnn.weight_hh_l0.shape)}: the same")
    print("  weights are reused at every time step (that is what makes it recurrent)")
    print(f"  by hand:\n{by_hand.squeeze(1)}\n  nn.RNN:\n{expected.squeeze(1)}")
    print(f"  torch.allclose(by hand, nn.RNN output): {same}")
    return same


# %% 3. hello -> ohlol, three ways
class CellModel(nn.Module):
    """One RNNCell (hidden 8) stepped by hand, then a Linear layer to the 4 class scores.

    The source notes read a hidden state of size 4 directly as the class scores. That works for
    some seeds only: tanh squeezes every score into [-1, 1], and training can stall at "ohlll".
    A small Linear "head" on a slightly larger hidden state learns the task from every seed.
    """

    def __init__(self, hidden_size=8):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.RNNCell(input_size=4, hidden_size=hidden_size)
        self.fc = nn.Linear(hidden_size, len(IDX2CHAR))

    def forward(self, x_t, hidden):
        hidden = self.cell(x_t, hidden)  # [1, 4] one-hot + [1, 8] -> new hidden [1, 8]
        return self.fc(hidden), hidden  # scores for this step, state for the next


class SeqModel(nn.Module):
    """nn.RNN over the whole one-hot sequence, then the same kind of Linear head."""

    def __init__(self, hidden_size=8):
        super().__init__()
        self.rnn = nn.RNN(input_size=4, hidden_size=hidden_size)
        self.fc = nn.Linear(hidden_size, len(IDX2CHAR))

    def forward(self, x):  # x: [seq, batch, 4]
        out, _ = self.rnn(x)  # h_0 defaults to zeros; out: [seq, batch, hidden]
        return self.fc(out).reshape(-1, len(IDX2CHAR))  # [seq * batch, classes]


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


def train_cell(device, epochs) -> tuple[list[float], str]:
    """Variant 1: we loop over the characters and add up one loss per step."""
    print("\n# 3a. one-hot + RNNCell (Adam lr 0.1)")
    inputs = nn.functional.one_hot(encode(SOURCE), 4).float().view(-1, 1, 4).to(device)
    labels = encode(TARGET).view(-1, 1).to(device)  # one label per step
    model = CellModel().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    history, predicted = [], ""
    for epoch in range(1, epochs + 1):
        hidden = torch.zeros(1, model.hidden_size, device=device)
        loss, chars = 0.0, []
        for x_t, label in zip(inputs, labels):
            scores, hidden = model(x_t, hidden)
            loss = loss + criterion(scores, label)  # keep the graph: no .item() here
            chars.append(scores.argmax(dim=1).item())
        optimizer.zero_grad()
        loss.backward()  # back-propagation through time, over all 5 steps
        optimizer.step()
        predicted = decode(chars)
        history.append(loss.item())
        print(f"  Predicted string: {predicted}, Epoch [{epoch}/{epochs}] loss={loss.item():.4f}")
    return history, predicted


def train_sequence(model, inputs, labels, lr, epochs, device) -> tuple[list[float], str]:
    """Variants 2 and 3: the whole sequence in one call, one loss over all steps."""
    model = model.to(device)
    inputs, labels = inputs.to(device), labels.to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history, predicted = [], ""
    for epoch in range(1, epochs + 1):
        outputs = model(inputs)  # [5, 4] scores
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        predicted = decode(outputs.argmax(dim=1).tolist())
        history.append(loss.item())
        print(f"  Predicted string: {predicted}, Epoch [{epoch}/{epochs}] loss={loss.item():.4f}")
    return history, predicted


# %% 4. GRU and LSTM: gates, and shapes with num_layers x num_directions
def gru_lstm_shapes() -> dict:
    print("\n# 4. GRU and LSTM (sequence 3, batch 1, input 4, hidden 2, 2 layers, bidirectional)")
    # GRU, per step (sigma = sigmoid, * = element-wise):
    #   r_t = sigma(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)        reset gate
    #   z_t = sigma(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)        update gate
    #   n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_(t-1) + b_hn))  candidate state
    #   h_t = (1 - z_t) * n_t + z_t * h_(t-1)                      keep old vs take new
    # LSTM adds a cell state c_t, a "conveyor belt" that gradients flow along easily:
    #   i_t = sigma(W_ii x_t + b_ii + W_hi h_(t-1) + b_hi)        input gate
    #   f_t = sigma(W_if x_t + b_if + W_hf h_(t-1) + b_hf)        forget gate
    #   g_t = tanh(W_ig x_t + b_ig + W_hg h_(t-1) + b_hg)         candidate cell
    #   o_t = sigma(W_io x_t + b_io + W_ho h_(t-1) + b_ho)        output gate
    #   c_t = f_t * c_(t-1) + i_t * g_t ;  h_t = o_t * tanh(c_t)
    x = torch.randn(3, 1, 4)
    layers, directions, hidden = 2, 2, 2
    gru = nn.GRU(4, hidden, num_layers=layers, bidirectional=True)
    out_gru, h_gru = gru(x)
    lstm = nn.LSTM(4, hidden, num_layers=layers, bidirectional=True)
    out_lstm, (h_lstm, c_lstm) = lstm(x)
    print(
        f"  GRU:  output {list(out_gru.shape)} (seq, batch, directions*hidden), "
        f"h_n {list(h_gru.shape)} (layers*directions, batch, hidden)"
    )
    print(
        f"  LSTM: output {list(out_lstm.shape)}, h_n {list(h_lstm.shape)}, c_n {list(c_lstm.shape)}"
    )
    print(
        f"  gate weights stacked in one matrix: GRU weight_ih_l0 {list(gru.weight_ih_l0.shape)}"
        f" (3 gates x {hidden}), LSTM weight_ih_l0 {list(lstm.weight_ih_l0.shape)} (4 gates)"
    )
    assert h_gru.shape[0] == layers * directions
    return {
        "gru_output_shape": list(out_gru.shape),
        "gru_hidden_shape": list(h_gru.shape),
        "lstm_output_shape": list(out_lstm.shape),
        "lstm_hidden_shape": list(h_lstm.shape),
        "lstm_cell_shape": list(c_lstm.shape),
    }


def plot_losses(histories: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, history in histories.items():
        ax.plot(range(1, len(history) + 1), history, marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="hello -> ohlol")
    ax.legend()
    save_figure(fig, out / "hello_ohlol_loss.png")


# %% Run the lesson
def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON, epochs=15, batch_size=1)
    references.clear()  # main() may run twice in one process (tests)
    # --quick trains the same three models: each is 15 tiny steps, already seconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these models are tiny: more CPU threads only add overhead
    try:
        metrics = shapes()  # the demos run on the CPU: a few numbers, no need for a GPU
        metrics["recurrence_matches_layer"] = recurrence_by_hand()
        cell_history, cell_pred = train_cell(args.device, args.epochs)

        print("\n# 3b. one-hot + nn.RNN (Adam lr 0.05)")
        one_hot = nn.functional.one_hot(encode(SOURCE), 4).float().view(-1, 1, 4)  # [5, 1, 4]
        rnn_history, rnn_pred = train_sequence(
            SeqModel(), one_hot, encode(TARGET), 0.05, args.epochs, args.device
        )

        print("\n# 3c. Embedding + 2-layer RNN + Linear (Adam lr 0.05)")
        indices = encode(SOURCE).view(1, -1)  # [batch 1, seq 5] of indices, batch_first
        emb_history, emb_pred = train_sequence(
            EmbeddingModel(), indices, encode(TARGET), 0.05, args.epochs, args.device
        )
        metrics |= gru_lstm_shapes()
    finally:
        torch.set_num_threads(threads)

    histories = {"RNNCell": cell_history, "nn.RNN": rnn_history, "Embedding + RNN": emb_history}
    plot_losses(histories, args.out)
    predictions = {"rnncell": cell_pred, "rnn": rnn_pred, "embedding": emb_pred}
    print("\nFinal predictions for 'hello':")
    for name, predicted in predictions.items():
        references.check(f"{name} prediction", predicted, TARGET)
    metrics |= {
        "all_ohlol": all(p == TARGET for p in predictions.values()),
        "predictions": predictions,
        "rnncell_loss_history": cell_history,
        "rnn_loss_history": rnn_history,
        "embedding_loss_history": emb_history,
        "data": "toy string hello -> ohlol",
        **references.metrics(),
    }
    write_metrics(args.out, metrics, headline="all_ohlol")
    return metrics


if __name__ == "__main__":
    main()
