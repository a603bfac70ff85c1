"""Lesson 12: state_dicts, whole modules, exact resume from atomic checkpoints, unsafe pickles."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main

from common import LessonError

STEM = "12_save_load"
RESNET18_PARAMETERS = 11_689_512


def checkpoint_of(out: Path) -> dict:
    return torch.load(out / STEM / "checkpoint.pt", weights_only=True)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lesson12")
    capture = pytest.MonkeyPatch()
    import io

    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        metrics = run_lesson_main(STEM, tmp_path, "--quick")
    finally:
        capture.undo()
    return metrics, buffer.getvalue(), tmp_path / STEM


def test_quick_run_trains_and_writes_its_files(quick_run):
    metrics, printed, out = quick_run
    history = metrics["train_loss_history"]
    assert len(history) == metrics["epochs"] == 6
    assert history[-1] < history[0]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    for name in ("checkpoint.pt", "model_weights.pt", "loss.png", "metrics.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp")), "atomic writes left temporary files behind"
    assert "Test accuracy after 6 epochs" in printed
    for epoch in range(1, 7):
        assert f"epoch {epoch}/6: train loss" in printed


def test_checkpoint_holds_everything_and_loads_with_weights_only(quick_run):
    metrics, _, out = quick_run
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(checkpoint) >= {"epoch", "model", "optimizer", "scheduler", "rng", "history"}
    assert checkpoint["epoch"] == 6
    assert set(checkpoint["rng"]) >= {"torch", "numpy", "python"}
    assert checkpoint["history"]["train_loss"] == metrics["train_loss_history"]
    assert checkpoint["optimizer"]["state"], "Adam's moments must be saved"
    assert checkpoint["scheduler"]["last_epoch"] == 6
    # The weights file is a plain state_dict equal to the checkpoint's model.
    weights = torch.load(out / "model_weights.pt", weights_only=True)
    assert list(weights) == ["layers.1.weight", "layers.1.bias", "layers.4.weight", "layers.4.bias"]
    assert all(torch.equal(weights[key], checkpoint["model"][key]) for key in weights)


def test_state_dict_and_whole_module_round_trips(quick_run):
    metrics, printed, _ = quick_run
    assert "weights identical: True" in printed
    assert metrics["whole_module_refused_by_weights_only"] is True
    assert metrics["whole_module_reloaded"] is True
    refusal = next(line for line in printed.splitlines() if "refuses it" in line)
    # torch >= 2.4: "Unsupported global: GLOBAL ...FashionMLP"; 2.3: "Unsupported class ..."
    assert "Unsupported" in refusal and "FashionMLP" in refusal


def test_torchvision_round_trip(quick_run):
    metrics, printed, _ = quick_run
    assert metrics["resnet18_parameters"] == RESNET18_PARAMETERS
    assert metrics["resnet18_same_output"] is True
    assert f"parameters {RESNET18_PARAMETERS:,}" in printed
    # Tests run offline (conftest), so the random weights are announced, once.
    assert metrics["resnet18_weights"] == "random"
    assert printed.count("NOTICE: resnet18 ImageNet weights unavailable") == 1


def test_malicious_pickle_is_refused_before_its_payload_runs(quick_run):
    metrics, printed, _ = quick_run
    assert metrics["malicious_pickle_refused"] is True
    refusal = printed.index("weights_only=True refuses it: Unsupported", printed.index("# 6."))
    assert "print" in printed[refusal:].splitlines()[0]
    payload = printed.index("printed by code hidden inside the file")
    assert refusal < payload  # the payload only ran on the deliberate weights_only=False load


def test_crafted_file_never_runs_code_with_weights_only(tmp_path, capsys):
    lesson = load_lesson(STEM)
    path = tmp_path / "trap.pt"
    torch.save({"w": torch.ones(1), "trap": lesson.Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert "hidden inside the file" not in capsys.readouterr().out


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, capsys):
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    run_lesson_main(STEM, interrupted, "--quick", "--epochs", "1", "--resume")
    assert "no checkpoint at" in capsys.readouterr().out  # --resume with nothing yet: fresh
    assert checkpoint_of(interrupted)["epoch"] == 1
    resumed = run_lesson_main(STEM, interrupted, "--quick", "--epochs", "2", "--resume")
    assert "resumed from" in capsys.readouterr().out
    uninterrupted = run_lesson_main(STEM, straight, "--quick", "--epochs", "2")

    assert resumed["resumed_at_epoch"] == 1 and uninterrupted["resumed_at_epoch"] is None
    assert resumed["train_loss_history"] == uninterrupted["train_loss_history"]
    assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
    a, b = checkpoint_of(interrupted), checkpoint_of(straight)
    assert a["epoch"] == b["epoch"] == 2
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, state in b["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(a["optimizer"]["state"][index][name], value), name
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_an_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run_lesson_main(STEM, tmp_path, "--quick", "--epochs", "1")
    path = tmp_path / STEM / "checkpoint.pt"
    good = path.read_bytes()

    def dying_save(obj, file, *args, **kwargs):
        Path(file).write_bytes(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk...
        raise OSError("No space left on device")  # ...then the write fails

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", dying_save)
        with pytest.raises(OSError, match="No space left"):
            run_lesson_main(STEM, tmp_path, "--quick", "--epochs", "2", "--resume")
    assert path.read_bytes() == good, "a failed write damaged the previous checkpoint"
    assert not list(path.parent.glob(".*.tmp")), "the partial temporary file was left behind"
    # The good checkpoint still resumes.
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--epochs", "2", "--resume")
    assert metrics["resumed_at_epoch"] == 1 and checkpoint_of(tmp_path)["epoch"] == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not a checkpoint"])
def test_damaged_checkpoint_is_an_error_naming_the_file(tmp_path, damage):
    lesson = load_lesson(STEM)
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "model": {"w": torch.ones(100)}}, path)
    content = {
        "truncated": path.read_bytes()[:200],
        "garbage": b"this is not a checkpoint at all\n" * 10,
        "empty": b"",
    }
    if damage in content:
        path.write_bytes(content[damage])
    with pytest.raises(LessonError, match="checkpoint") as error:
        lesson.load_checkpoint(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_resume_with_different_settings_is_refused(tmp_path):
    run_lesson_main(STEM, tmp_path, "--quick", "--epochs", "1")
    with pytest.raises(LessonError, match="exact resume needs the same settings"):
        run_lesson_main(
            STEM, tmp_path, "--quick", "--epochs", "2", "--resume", "--batch-size", "32"
        )


def test_corrupt_checkpoint_from_the_command_line_is_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x80\x02 corrupted")
    result = run_lesson_cli("12_save_load", "--quick", "--resume", "--out", str(out))
    assert str(out / "checkpoint.pt") in one_line_error(result)


def test_cached_pretrained_weights_are_used(tmp_path, monkeypatch, capsys):
    """With the ImageNet file in torch's hub cache, no network is needed and it is loaded."""
    from torchvision.models import ResNet18_Weights, resnet18

    lesson = load_lesson(STEM)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save(resnet18().state_dict(), cached)
    args = type("Args", (), {"offline": True})()
    state, source = lesson.pretrained_resnet18_state(args)
    assert source == "ImageNet (cached)" and "fc.weight" in state
    assert "NOTICE" not in capsys.readouterr().out

    cached.unlink()
    state, source = lesson.pretrained_resnet18_state(args)
    assert state is None and source == "random"
    assert "NOTICE: resnet18 ImageNet weights unavailable (downloads are off)" in (
        capsys.readouterr().out
    )


@pytest.mark.real_data
def test_real_fashion_mnist_quick(real_data_dir, tmp_path, capsys):
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert "stand-in" not in capsys.readouterr().out
    assert metrics["train_loss_history"][-1] < metrics["train_loss_history"][0]
    assert metrics["test_accuracy"] > 0.6  # 512 real images, 6 epochs
