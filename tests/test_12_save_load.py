"""Lesson 12: state_dict round trips, whole modules and crafted pickles, exact resume from
checkpoints written atomically, and one-line errors for every bad checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch.utils.data import DataLoader, TensorDataset

from common import LessonError

STEM = "12_save_load"
RESNET18_PARAMETERS = 11_689_512
STATE_DICT = {
    "layers.1.weight": [256, 784],
    "layers.1.bias": [256],
    "layers.4.weight": [10, 256],
    "layers.4.bias": [10],
}
CHECKPOINT_KEYS = {"epoch", "model", "optimizer", "scheduler", "rng", "history", "settings"}
QUICK_SETTINGS = {"lr": 1e-3, "batch_size": 64, "train_images": 512, "device": "cpu"}
STAND_INS = {"LESSONS_OFFLINE": "1", "LESSONS_REQUIRE_REAL_DATA": None}


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


@pytest.fixture(scope="module")
def empty_root(tmp_path_factory) -> Path:
    """An empty data root: the stand-ins, as in the session's quick run."""
    return tmp_path_factory.mktemp("empty-data-root-12")


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, empty_root) -> bytes:
    """The checkpoint a `--quick --epochs 2` run leaves behind, as bytes."""
    out = tmp_path_factory.mktemp("two-epochs")
    run_script(STEM, out, "--quick", "--epochs", "2", "--data-dir", str(empty_root), env=STAND_INS)
    return (out / "checkpoint.pt").read_bytes()


def out_with_checkpoint(tmp_path: Path, content: bytes) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(content)
    return out


def tiny_loaders(images: int = 96) -> tuple[DataLoader, DataLoader]:
    """Random images and labels: enough for train() to run in well under a second."""
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(images, 1, 28, 28, generator=generator),
                         torch.randint(10, (images,), generator=generator))  # fmt: skip
    return DataLoader(data, batch_size=32, shuffle=True), DataLoader(data, batch_size=100)


def test_state_dict_names_and_shapes(lesson, quick_run):
    model = lesson.FashionMLP()
    assert {name: list(t.shape) for name, t in model.state_dict().items()} == STATE_DICT
    assert sum(t.numel() for t in model.state_dict().values()) == 203_530
    run = quick_run(STEM)
    for name, shape in STATE_DICT.items():
        assert run.line(f"model.state_dict()['{name}']") == f"model.state_dict()['{name}']: {shape}"
    line = run.line("optimizer param_groups:")
    assert "lr 0.001, betas (0.9, 0.999), params [0, 1, 2, 3]" in line
    assert line.endswith("state of parameter 0: ['exp_avg', 'exp_avg_sq', 'step']")


def test_round_trip_gives_the_same_predictions(lesson, tmp_path):
    torch.manual_seed(0)
    model, images = lesson.FashionMLP(), torch.rand(8, 1, 28, 28)
    trip = lesson.round_trip(model, tmp_path / "weights.pt", images)
    assert trip["identical"] and trip["before"] == trip["after"] and len(trip["before"]) == 8
    assert trip["train_mode_differs"]  # dropout: why model.eval() comes before predictions
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)  # a plain state_dict
    assert {name: list(t.shape) for name, t in saved.items()} == STATE_DICT


def test_the_quick_run_shows_the_round_trip(quick_run):
    run = quick_run(STEM)
    before = run.line("predicted classes before saving:").split(":", 1)[1].strip()
    after = run.line("after loading into a fresh model:").split(":", 1)[1].strip()
    assert before == after and before.startswith("[")
    line = run.line("identical outputs: ")
    assert line.startswith("identical outputs: True; in train mode the same images give other")
    assert "other outputs: True; model_weights.pt: " in line
    size_kb = int(line.rsplit(": ", 1)[1].removesuffix(" kB"))
    assert 814 <= size_kb <= 830  # 203,530 float32 numbers, plus what each torch version adds
    assert run.metrics["round_trip_identical"] is True


def test_resnet18_round_trip(quick_run):
    from torchvision.models import ResNet18_Weights

    run = quick_run(STEM)
    metrics = run.metrics
    assert metrics["resnet18_parameters"] == RESNET18_PARAMETERS
    assert metrics["resnet18_same_output"] is True
    name = Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    cached = (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()
    source = "ImageNet" if cached else "random"  # the tests run offline: the cache or nothing
    assert metrics["resnet18_weights"] == source
    assert run.line(f"resnet18 ({source} weights): {RESNET18_PARAMETERS:,} parameters")
    assert run.line("resnet18 (").endswith("the reloaded copy gives the same output: True")
    notice = "NOTICE: resnet18 ImageNet weights unavailable (downloads are off)"
    assert run.printed.count(notice) == (0 if cached else 1)


def test_cached_pretrained_weights_are_used(lesson, tmp_path, monkeypatch, capsys):
    """With the ImageNet file in torch's hub cache, no network is needed and it is loaded."""
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(1)
    stored = resnet18().state_dict()
    torch.save(stored, cached)
    model, source = lesson.resnet18(offline=True)
    assert source == "ImageNet" and torch.equal(model.fc.weight, stored["fc.weight"])
    assert "NOTICE" not in capsys.readouterr().out

    cached.unlink()
    model, source = lesson.resnet18(offline=True)
    assert source == "random" and not torch.equal(model.fc.weight, stored["fc.weight"])
    assert "unavailable (downloads are off): using random weights" in capsys.readouterr().out


def refused(name: str) -> re.Pattern:
    """The refusal of a weights_only load, as torch 2.3 ('Unsupported class __builtin__.print')
    and current torch ('Unsupported global: GLOBAL print') word it."""
    return re.compile(rf"refused \(Unsupported (global: GLOBAL|class) (__builtin__\.)?{name}\)")


def test_the_whole_module_needs_weights_only_false(quick_run):
    run = quick_run(STEM)
    refusal = run.metrics["whole_module_weights_only"]
    assert refused(r"__main__\.FashionMLP").fullmatch(refusal), refusal
    assert (
        run.line("whole module, weights_only=True:")
        == f"whole module, weights_only=True: {refusal}"
    )
    assert run.line("whole module, weights_only=False:").endswith(
        "a FashionMLP, same weights: True"
    )


def test_the_crafted_file_is_refused_before_its_payload_runs(quick_run):
    run = quick_run(STEM)
    refusal = run.metrics["crafted_file_weights_only"]
    assert refused("print").fullmatch(refusal), refusal
    lines = run.printed.splitlines()
    refused_at = lines.index(f"crafted file, weights_only=True: {refusal}")
    payload = lines.index("!!! this line was printed by code hidden inside the file !!!")
    assert refused_at < payload  # it ran only on the deliberate weights_only=False load
    assert lines.count(lines[payload]) == 1
    assert not (run.out / "innocent_looking_weights.pt").exists()


def test_weights_only_never_runs_the_payload(lesson, tmp_path, capsys):
    path = tmp_path / "trap.pt"
    torch.save({"w": torch.ones(1), "trap": lesson.Payload()}, path)
    answer = lesson.weights_only_answer(path)
    assert refused("print").fullmatch(answer), answer
    assert "hidden inside the file" not in capsys.readouterr().out
    torch.save({"w": torch.ones(1)}, path)
    assert lesson.weights_only_answer(path) == "loaded"


def test_the_training_loop_lowers_the_loss_and_checkpoints(lesson, tmp_path):
    torch.manual_seed(0)
    train_loader, test_loader = tiny_loaders()
    model, path = lesson.FashionMLP(), tmp_path / "checkpoint.pt"
    history = lesson.train(model, train_loader, test_loader, 10, path)
    assert len(history["train_loss"]) == 10 and history["resumed_at"] is None
    assert history["train_loss"][-1] < 0.9 * history["train_loss"][0], history["train_loss"]
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == CHECKPOINT_KEYS and checkpoint["epoch"] == 10
    assert checkpoint["history"]["train_loss"] == history["train_loss"]
    assert checkpoint["scheduler"]["last_epoch"] == 10
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.5**5)
    assert not path.with_name("checkpoint.pt.tmp").exists()


def test_resume_is_exact_and_needs_the_random_state(lesson, tmp_path, monkeypatch):
    train_loader, test_loader = tiny_loaders()
    assert lesson.resume_difference(train_loader, test_loader, tmp_path, 0, "cpu") == 0.0
    # Without the saved random state, shuffling and dropout differ after the restart.
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    assert lesson.resume_difference(train_loader, test_loader, tmp_path, 0, "cpu") > 0


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    history, metrics = run.globals["history"], run.metrics
    assert type(run.globals["model"]).__name__ == "FashionMLP"  # runpy's own class object
    assert len(history["train_loss"]) == metrics["epochs"] == 6
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert metrics["test_accuracy"] == history["test_accuracy"][-1]
    assert metrics["resume_max_difference"] == 0.0 and metrics["resumed_at_epoch"] is None
    assert run.line("largest weight difference, resumed vs uninterrupted: 0.0")
    assert run.line("resumed from ").endswith("proof_resumed.pt: 1 of 2 epochs done")
    for epoch in range(1, 7):
        assert f"epoch {epoch}: train loss" in run.printed
    assert (run.out / "loss.png").stat().st_size > 0
    assert not list(run.out.glob("*.tmp")), "a temporary checkpoint was left behind"


def test_the_checkpoint_holds_everything(quick_run):
    run = quick_run(STEM)
    checkpoint = torch.load(run.out / "checkpoint.pt", weights_only=True)
    assert set(checkpoint) == CHECKPOINT_KEYS and checkpoint["epoch"] == 6
    assert checkpoint["settings"] == QUICK_SETTINGS
    assert checkpoint["history"]["train_loss"] == run.metrics["train_loss_history"]
    assert len(checkpoint["optimizer"]["state"]) == 4, "Adam's running averages are saved"
    assert checkpoint["scheduler"]["last_epoch"] == 6
    assert len(checkpoint["rng"]) == 1 and checkpoint["rng"][0].dtype == torch.uint8  # CPU only
    weights = torch.load(run.out / "model_weights.pt", weights_only=True)
    assert list(weights) == list(STATE_DICT)  # the trained weights, as a plain state_dict
    assert all(torch.equal(weights[key], checkpoint["model"][key]) for key in weights)


def test_resume_from_the_command_line_ends_like_the_uninterrupted_run(
    quick_run, two_epochs, empty_root, tmp_path
):
    out = out_with_checkpoint(tmp_path, two_epochs)
    run = run_script(STEM, out, "--quick", "--resume", "--data-dir", str(empty_root), env=STAND_INS)
    assert run.line("resumed from ") == f"resumed from {out / 'checkpoint.pt'}: 2 of 6 epochs done"
    assert run.metrics["resumed_at_epoch"] == 2
    straight = quick_run(STEM)  # 6 epochs without a break, from the same seed
    assert run.metrics["train_loss_history"] == straight.metrics["train_loss_history"]
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    uninterrupted = torch.load(straight.out / "checkpoint.pt", weights_only=True)
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for index, state in uninterrupted["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(resumed["optimizer"]["state"][index][name], value), name
    assert resumed["scheduler"] == uninterrupted["scheduler"]


def test_an_interrupted_write_keeps_the_previous_checkpoint(
    lesson, two_epochs, empty_root, tmp_path, monkeypatch
):
    out = out_with_checkpoint(tmp_path, two_epochs)
    real_save = torch.save

    def dying_save(obj, file, *args, **kwargs):
        if str(file).endswith("checkpoint.pt.tmp"):
            Path(file).write_bytes(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk
            raise OSError("No space left on device")  # ...then the write fails
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="No space left"):
        run_script(STEM, out, "--quick", "--epochs", "3", "--resume", "--data-dir",
                   str(empty_root), env=STAND_INS)  # fmt: skip
    monkeypatch.undo()
    assert (out / "checkpoint.pt").read_bytes() == two_epochs, "the last good checkpoint changed"
    assert lesson.load_checkpoint(out / "checkpoint.pt", QUICK_SETTINGS)["epoch"] == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not a checkpoint", "tensor"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(lesson, tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "model": {"w": torch.ones(1000)}}, path)
    content = {
        "truncated": path.read_bytes()[:200],
        "garbage": b"this is not a checkpoint at all\n" * 10,
        "empty": b"",
    }
    if damage in content:
        path.write_bytes(content[damage])
    elif damage == "tensor":
        torch.save(torch.ones(3), path)
    with pytest.raises(LessonError, match="checkpoint") as error:
        lesson.load_checkpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_checkpoint_of_other_settings_is_refused(lesson, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "settings": QUICK_SETTINGS}, path)
    assert lesson.load_checkpoint(path, QUICK_SETTINGS)["settings"] == QUICK_SETTINGS
    with pytest.raises(LessonError, match="an exact resume needs the same settings"):
        lesson.load_checkpoint(path, QUICK_SETTINGS | {"batch_size": 32})


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("corrupt", "checkpoint.pt is not a readable checkpoint (Unsupported operand"),
        ("truncated", "checkpoint.pt is not a readable checkpoint (PytorchStreamReader failed"),
        ("missing", "--resume: there is no checkpoint at"),
        ("other settings", "'batch_size': 32"),
    ],
)
def test_a_bad_resume_is_one_line_from_the_command_line(
    case, expected, two_epochs, empty_root, tmp_path
):
    content = {"corrupt": b"\x80\x02 corrupted", "truncated": two_epochs[: len(two_epochs) // 2]}
    out = out_with_checkpoint(tmp_path, content.get(case, two_epochs))
    if case == "missing":
        (out / "checkpoint.pt").unlink()
    extra = ["--batch-size", "32"] if case == "other settings" else []
    result = run_lesson_cli(STEM, "--quick", "--resume", "--data-dir", str(empty_root),
                            "--out", str(out), *extra, timeout=600)  # fmt: skip
    line = one_line_error(result)
    assert expected in line and str(out / "checkpoint.pt") in line, line
    if case == "other settings":
        assert "an exact resume needs the same settings" in line


@pytest.mark.real_data
def test_the_mlp_learns_the_real_data_and_resumes_exactly(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert "NOTICE: FashionMNIST" not in run.printed
    assert "data" not in run.metrics  # the real data, not a stand-in
    history = run.metrics["train_loss_history"]
    assert history[-1] < 0.6 * history[0], history
    assert run.metrics["test_accuracy"] > 0.6  # 512 real images, 6 epochs; chance is 0.1
    assert run.metrics["resume_max_difference"] == 0.0
