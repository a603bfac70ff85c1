"""Text classification: news headlines → World, Sports, Business or Sci/Tech (AG_NEWS).

What you will learn
  - reading AG_NEWS from its CSV files (class 1–4, title, description) and shifting labels to 0–3
  - the torchtext text pipeline: the "basic_english" tokenizer and a vocabulary built from an
    iterator, with <unk> as the default index for words never seen in training
  - a `collate_fn` that turns texts of different lengths into one padded batch plus their lengths
  - the notes' RNN: Embedding → nn.RNN over `pack_padded_sequence(..., enforce_sorted=False)` →
    Linear on the last hidden state; the same model with a GRU; and the FastText baseline (the mean
    of the word embeddings, computed by `nn.EmbeddingBag` with offsets)
  - accuracy and time per epoch for each model, and predictions for headlines it has never seen

How to run
    python lessons/10_text_classification.py                 # all three models
    python lessons/10_text_classification.py --models fasttext gru --epochs 3
    python lessons/10_text_classification.py --predict "Rocket lands on Mars after long trip"
Data: <data root>/AG_NEWS/{train,test}.csv (downloaded with an MD5 check when missing and online).
Where only test.csv exists, its 7,600 real rows are split into 6,000 for training and 1,600 held
out (said when it happens); offline with neither, a synthetic four-topic stand-in is used.

Time: --quick ~5 s; full ~1.5 min on the 6,000/1,600 split of test.csv (2-core CPU); the full
120,000-row AG_NEWS takes about 20 times longer per epoch.
"""

# %% Imports
import csv
import random
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.utils.data import DataLoader

from common import LessonError
from common.cli import lesson_args, positive_float
from common.data import DataError, DataUnavailable, fetch_file, open_text, use_stand_in
from common.device import synchronize
from common.report import save_figure, write_metrics
from common.text import BACKEND, build_vocab_from_iterator, get_tokenizer

LESSON = Path(__file__).stem
CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
# Where torchtext downloaded AG_NEWS from, with its checksums (torchtext/datasets/ag_news.py).
AG_NEWS_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
AG_NEWS_MD5 = {
    "train": "b1a00f826fdfbd249f79597b59e1dc12",
    "test": "d52ea96a97a2d943681189a97654912d",
}
VOCAB_SIZE = 20_000
SPLIT_TRAIN_ROWS = 6000  # when only test.csv exists: train on 6,000 of its rows, hold out the rest
NEW_HEADLINES = [
    "Striker scores twice as his club wins the cup final",
    "Oil prices climb as investors fear supply cuts",
    "New chip promises faster laptops and longer battery life",
    "Leaders meet to discuss a ceasefire after weeks of fighting",
]


# %% 1. Data: AG_NEWS rows are (label 1-4, title, description)
def read_ag_news_csv(path: Path) -> list[tuple[int, str]]:
    """(label 0-3, "title description") per row; any other layout is a one-line DataError."""
    rows = []
    with open_text(path) as file:
        try:
            for number, row in enumerate(csv.reader(file), start=1):
                if len(row) != 3 or row[0] not in ("1", "2", "3", "4"):
                    raise DataError(
                        f"{path} line {number}: expected 3 columns (class 1-4, title, "
                        f"description), got {row[:3]!r}{'...' if len(row) > 3 else ''}"
                    )
                # As torchtext does: the text is title and description joined by a space.
                rows.append((int(row[0]) - 1, f"{row[1]} {row[2]}"))
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not a readable AG_NEWS CSV file ({error})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def stand_in_news(count: int, seed: int) -> list[tuple[int, str]]:
    """A deterministic synthetic four-topic corpus: each text mixes words of its topic with
    common words (and a few words from other topics), so word choice predicts the topic."""
    topics = [
        "minister election talks troops ceasefire embassy president rebels treaty refugees "
        "parliament border summit protest diplomats",
        "match coach season striker goal tournament league championship injury olympic "
        "victory score referee playoff stadium",
        "shares profit market investors quarterly earnings merger oil prices bank stocks "
        "economy retailer deal inflation",
        "software internet computer researchers space chip wireless science data phone "
        "browser launch network robot nasa",
    ]
    words = [topic.split() for topic in topics]
    common = "the a of to in on for with after as new says said over amid report week"
    common = common.split()
    generator = random.Random(seed)
    rows = []
    for _ in range(count):
        label = generator.randrange(4)
        text = []
        for _ in range(generator.randint(8, 30)):
            roll = generator.random()  # half common words, 35% topic words, 15% any topic
            pool = common if roll < 0.5 else words[label]
            if roll >= 0.85:
                pool = generator.choice(words)
            text.append(generator.choice(pool))
        rows.append((label, " ".join(text).capitalize() + "."))
    return rows


def load_ag_news(args) -> tuple[list, list, str]:
    """(train rows, test rows, where they came from) — see the module docstring for the order."""
    root = Path(args.data_dir)
    files = {}
    for split in ("train", "test"):
        try:
            files[split] = fetch_file(
                root,
                f"AG_NEWS/{split}.csv",
                url=AG_NEWS_URL + f"{split}.csv",
                md5=AG_NEWS_MD5[split],
                offline=args.offline,
            )
        except DataUnavailable as error:
            files[split] = None
            reason = str(error)
    if files["train"] and files["test"]:
        return read_ag_news_csv(files["train"]), read_ag_news_csv(files["test"]), "AG_NEWS"
    present = files["test"] or files["train"]
    if present:  # one real file: split it, 6,000 rows to train on (at most 80%), the rest held out
        rows = read_ag_news_csv(present)
        if len(rows) < 10:
            raise DataError(f"{present}: only {len(rows)} rows, too few to split for training")
        # A fixed shuffle (not --seed): every run trains and tests on the same rows.
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
        rows = [rows[index] for index in order]
        cut = min(SPLIT_TRAIN_ROWS, len(rows) * 4 // 5)
        train, test = rows[:cut], rows[cut:]
        print(
            f"NOTICE: {reason}: training on {len(train):,} rows of the real {present.name} and "
            f"testing on the other {len(test):,} (held out). Accuracies are lower than with "
            "the 120,000 training rows."
        )
        return train, test, f"AG_NEWS {present.name} split {len(train)}/{len(test)}"
    use_stand_in(
        "AG_NEWS",
        f"files are missing ({reason})",
        f"run once with network access, or put train.csv and test.csv under {root}/AG_NEWS/",
    )
    return stand_in_news(6000, seed=1), stand_in_news(1600, seed=2), "stand-in"


# %% 2. Text pipeline: tokenizer, vocabulary, collate_fn
def build_vocab(train_rows, tokenizer):
    # Index 0 is padding, 1 is <unk>; words are numbered from the most frequent on. Keeping only
    # the 20,000 most frequent tokens (the full AG_NEWS has ~95,000) makes the embedding table,
    # and so every optimizer step, five times smaller; the rare words rarely decide a topic.
    vocab = build_vocab_from_iterator(
        (tokenizer(text) for _, text in train_rows),
        specials=["<pad>", "<unk>"],
        max_tokens=VOCAB_SIZE,
    )
    vocab.set_default_index(vocab["<unk>"])  # unseen words map to <unk> instead of raising
    return vocab


def make_collate(vocab, tokenizer):
    """collate_fn: a list of (label, text) → (labels, padded token ids, lengths)."""

    def collate(batch):
        labels, ids, lengths = [], [], []
        for label, text in batch:
            # An empty text would make an empty sequence, which packing refuses: keep one <unk>.
            tokens = vocab(tokenizer(text)) or [vocab["<unk>"]]
            labels.append(label)
            ids.append(torch.tensor(tokens, dtype=torch.int64))
            lengths.append(len(tokens))
        padded = pad_sequence(ids, batch_first=True, padding_value=vocab["<pad>"])  # B x T
        return torch.tensor(labels), padded, torch.tensor(lengths)

    return collate


# %% 3. Models
class RNNClassifier(nn.Module):
    """The notes' model: Embedding → RNN (or GRU) over the packed batch → Linear(last hidden)."""

    def __init__(self, vocab_size, embed_dim=64, hidden_dim=128, classes=4, cell="rnn"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        recurrent = {"rnn": nn.RNN, "gru": nn.GRU}[cell]
        self.rnn = recurrent(embed_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, classes)

    def forward(self, ids, lengths):
        embedded = self.embedding(ids)  # B x T x E
        # Packing tells the RNN each text's true length, so it stops at the last real word and
        # hidden[-1] is the state after that word, not after a run of padding.
        # enforce_sorted=False: the batch need not be sorted by length. Lengths live on the CPU.
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, hidden = self.rnn(packed)  # hidden: layers x B x H, in the batch's original order
        return self.fc(hidden[-1])


class FastText(nn.Module):
    """The mean of the word embeddings → Linear. Order-blind, but fast and a strong baseline."""

    def __init__(self, vocab_size, embed_dim=64, classes=4):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean")
        self.fc = nn.Linear(embed_dim, classes)

    def forward(self, ids, lengths):
        # EmbeddingBag takes all texts as one flat list of ids plus the position where each text
        # starts (offsets): no padding is looked up at all.
        keep = torch.arange(ids.shape[1], device=ids.device) < lengths.to(ids.device)[:, None]
        offsets = torch.cumsum(lengths, 0) - lengths
        return self.fc(self.embedding(ids[keep], offsets.to(ids.device)))


def make_model(name, vocab_size):
    if name == "fasttext":
        return FastText(vocab_size)
    return RNNClassifier(vocab_size, cell=name)


# %% 4. Training and evaluation
def train_epoch(model, loader, loss_fn, optimizer, device, quick):
    model.train()
    total_loss, batches = 0.0, 0
    for batch, (labels, ids, lengths) in enumerate(loader):
        labels, ids = labels.to(device), ids.to(device)
        loss = loss_fn(model(ids, lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        # Plain RNNs are prone to exploding gradients on long texts: cap the gradient norm.
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total_loss += loss.item()
        batches += 1
        if batch % 100 == 0 and not quick:
            seen = batch * loader.batch_size
            print(f"    loss {loss.item():.4f}  [{seen:>6}/{len(loader.dataset)}]")
    return total_loss / batches


@torch.no_grad()
def accuracy(model, loader, device):
    model.eval()
    correct = total = 0
    for labels, ids, lengths in loader:
        predicted = model(ids.to(device), lengths).argmax(1).cpu()
        correct += (predicted == labels).sum().item()
        total += labels.numel()
    return correct / total


def fit(name, model, train_loader, test_loader, args, lr):
    """Train `model` for args.epochs; print loss, accuracy and time per epoch."""
    print(f"\n# {name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    model.to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = {"loss": [], "accuracy": [], "seconds": []}
    for epoch in range(1, args.epochs + 1):
        synchronize(args.device)
        started = time.perf_counter()
        loss = train_epoch(model, train_loader, loss_fn, optimizer, args.device, args.quick)
        synchronize(args.device)
        seconds = time.perf_counter() - started
        acc = accuracy(model, test_loader, args.device)
        print(f"  epoch {epoch}: loss {loss:.4f} | test accuracy {acc:.4f} | {seconds:.1f} s/epoch")
        history["loss"].append(loss)
        history["accuracy"].append(acc)
        history["seconds"].append(seconds)
    return history


@torch.no_grad()
def predict(model, headlines, collate, device):
    model.eval()
    _, ids, lengths = collate([(0, text) for text in headlines])
    return [CLASSES[i] for i in model(ids.to(device), lengths).argmax(1).tolist()]


# %% 5. Putting it together
def configure(parser):
    # --epochs defaults to "auto": 5 epochs on a few thousand rows, 2 on the full 120,000.
    parser.set_defaults(epochs=None)
    for action in parser._actions:
        if action.dest == "epochs":
            action.help = "training epochs (default: 5, or 2 with more than 20,000 training rows)"
    parser.add_argument(
        "--models",
        nargs="+",
        choices=["fasttext", "rnn", "gru"],
        default=["fasttext", "rnn", "gru"],
        help="which models to train (default: all three)",
    )
    parser.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate")
    parser.add_argument(
        "--predict", nargs="+", metavar="HEADLINE", help="headlines to classify at the end"
    )


LEARNING_RATES = {"fasttext": 1e-2, "rnn": 1e-3, "gru": 2e-3}


def main(argv=None) -> dict:
    args = lesson_args(__doc__, argv, name=LESSON, configure=configure, epochs=5, batch_size=64)
    headlines = args.predict or NEW_HEADLINES
    tokenizer = get_tokenizer("basic_english")
    for headline in headlines:
        if not tokenizer(headline):
            raise LessonError(f"--predict: {headline!r} has no words to classify")

    train_rows, test_rows, source = load_ag_news(args)
    if args.epochs is None:  # more data per epoch needs fewer epochs
        args.epochs = 2 if len(train_rows) > 20_000 else 5
    if args.quick:  # a few batches and two epochs: same code, seconds on a CPU
        train_rows, test_rows, args.epochs = train_rows[:640], test_rows[:320], min(args.epochs, 2)
    print(f"\n# Data: {source}: {len(train_rows):,} training rows, {len(test_rows):,} test rows")
    label, text = train_rows[0]
    print(f"  first row: label {label} ({CLASSES[label]}): {text[:90]!r}")
    print(f"  tokens: {tokenizer(text)[:12]}")

    print(f"\n# Vocabulary (text pipeline: {BACKEND})")
    vocab = build_vocab(train_rows, tokenizer)
    print(f"  {len(vocab):,} tokens; most frequent: {vocab.get_itos()[2:12]}")
    print(f"  'the' -> {vocab['the']}, 'qwertyuiop' -> {vocab['qwertyuiop']} (<unk>)")

    collate = make_collate(vocab, tokenizer)
    loader = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(
        train_rows, batch_size=args.batch_size, shuffle=True, collate_fn=collate, generator=loader
    )
    test_loader = DataLoader(test_rows, batch_size=256, collate_fn=collate)
    labels, ids, lengths = next(iter(train_loader))
    print(
        f"  one batch: labels {list(labels.shape)}, ids {list(ids.shape)} (padded), "
        f"lengths {lengths[:6].tolist()}..."
    )

    histories, models = {}, {}
    for name in args.models:
        torch.manual_seed(args.seed)
        models[name] = make_model(name, len(vocab))
        histories[name] = fit(
            name, models[name], train_loader, test_loader, args, args.lr or LEARNING_RATES[name]
        )

    print("\n# Summary (test accuracy after the last epoch, mean time per epoch)")
    for name, history in histories.items():
        mean_seconds = sum(history["seconds"]) / len(history["seconds"])
        print(f"  {name:>8}: {history['accuracy'][-1]:.4f}  {mean_seconds:.1f} s/epoch")
    best = max(histories, key=lambda name: histories[name]["accuracy"][-1])
    print(f"  best: {best} ({histories[best]['accuracy'][-1]:.4f})")

    print(f"\n# Predictions of {best} for new headlines")
    predictions = dict(zip(headlines, predict(models[best], headlines, collate, args.device)))
    for headline, topic in predictions.items():
        print(f"  {topic:>9} <- {headline}")

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, history in histories.items():
        ax.plot(range(1, args.epochs + 1), history["accuracy"], marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="test accuracy", title=f"AG_NEWS ({source})")
    ax.legend()
    save_figure(fig, args.out / "accuracy.png")

    metrics = {
        "best_model": best,
        "best_accuracy": histories[best]["accuracy"][-1],
        "data_source": source,
        "text_backend": BACKEND,
        "train_rows": len(train_rows),
        "test_rows": len(test_rows),
        "vocab_size": len(vocab),
        "predictions": predictions,
    }
    for name, history in histories.items():
        metrics[f"{name}_accuracy"] = history["accuracy"][-1]
        metrics[f"{name}_accuracy_history"] = history["accuracy"]
        metrics[f"{name}_seconds_per_epoch"] = history["seconds"]
        metrics[f"{name}_loss_history"] = history["loss"]
    write_metrics(args.out, metrics, headline="best_accuracy")
    return metrics


if __name__ == "__main__":
    main()
