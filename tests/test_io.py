"""Folder writes that never lose the last complete folder."""
from pathlib import Path

import pytest

from common.io import atomic_folder
from tests.conftest import ROOT


def write_folder(path: Path, text: str) -> None:
    with atomic_folder(path) as tmp:
        (tmp / "weights.txt").write_text(text)


def test_a_new_folder_replaces_the_old_one_whole(tmp_path):
    write_folder(tmp_path / "best_model", "old")
    write_folder(tmp_path / "best_model", "new")
    assert (tmp_path / "best_model" / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]  # no .tmp or .old left behind


def test_an_error_while_writing_keeps_the_old_folder(tmp_path):
    write_folder(tmp_path / "best_model", "old")
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "best_model") as tmp:
            (tmp / "weights.txt").write_text("half")
            raise RuntimeError("killed mid-write")
    assert (tmp_path / "best_model" / "weights.txt").read_text() == "old"


def test_a_failed_swap_keeps_the_old_folder(tmp_path, monkeypatch):
    """The crash the swap order guards against: the new folder cannot be renamed in (disk full, a kill between two
    steps). The last complete folder must survive it."""
    write_folder(tmp_path / "best_model", "old")
    rename = Path.rename

    def failing_rename(self, target):
        if self.name.endswith(".tmp"):
            raise OSError("no space left on device")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError):
        write_folder(tmp_path / "best_model", "new")
    assert (tmp_path / "best_model" / "weights.txt").read_text() == "old"


@pytest.fixture
def umask_022():
    import os

    before = os.umask(0o022)
    yield
    os.umask(before)


def unreadable_to_others(folder: Path) -> list[str]:
    """Files others cannot read, and folders they cannot enter, under folder (mode bits, as ls -l shows them)."""
    import stat

    return [f"{p.relative_to(folder)} {stat.filemode(p.stat().st_mode)}" for p in [folder, *folder.rglob("*")]
            if (p.stat().st_mode & (0o055 if p.is_dir() else 0o044)) != (0o055 if p.is_dir() else 0o044)]


def test_unreadable_to_others_finds_an_owner_only_file(umask_022, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "shared.txt").write_text("x")
    (run / "checkpoints" / "private.txt").write_text("x")
    (run / "checkpoints" / "private.txt").chmod(0o600)
    assert unreadable_to_others(run) == ["checkpoints/private.txt -rw-------"]
    (run / "checkpoints").chmod(0o700)
    assert unreadable_to_others(run)[0] == "checkpoints drwx------"


@pytest.mark.slow
def test_every_file_a_run_writes_follows_the_umask(umask_022, tiny_distilbert, imdb_dir, tmp_path):
    """Under umask 022 a colleague can read every file of a run folder (config, metrics, results, predictions,
    checkpoints, best model, adapters): the loop, the Trainer, the SFT script and the baseline."""
    from baseline import tfidf
    from distilbert import train_loop, train_trainer
    from mistral import train_sft
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    common = ["--data_dir", str(imdb_dir), "--report_to", "none"]
    encoder = ["--model_name_or_path", str(tiny_distilbert), "--cache_dir", str(tmp_path / "cache"), "--max_steps",
               "4", "--max_train_samples", "32", "--max_eval_samples", "16", "--max_test_samples", "16",
               "--max_length", "32", *common]
    train_loop.main(["--config", str(ROOT / "configs/distilbert_loop.yaml"), "--output_dir", str(tmp_path / "loop"),
                     "--eval_steps", "2", "--save_steps", "2", *encoder])
    train_trainer.main(["--config", str(ROOT / "configs/distilbert_trainer.yaml"), "--output_dir",
                        str(tmp_path / "trainer"), "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy",
                        "steps", "--save_steps", "2", "--use_cpu", "true", *encoder])
    model = save_tiny_mistral(tmp_path / "tiny_mistral", chat_template=CHAT_TEMPLATE)
    train_sft.main(["--config", str(ROOT / "configs/mistral_sft.yaml"), "--model_name_or_path", str(model),
                    "--output_dir", str(tmp_path / "sft"), "--n_train", "8", "--n_eval", "4", "--n_test", "4",
                    "--max_length", "96", "--lora_r", "4", "--num_train_epochs", "1", *common])
    tfidf.main(["--config", str(ROOT / "configs/baseline.yaml"), "--output_dir", str(tmp_path / "baseline"),
                "--min_df", "1", *common])
    for run in ("loop", "trainer", "sft", "baseline"):
        assert (tmp_path / run / "results.json").is_file()
        assert not unreadable_to_others(tmp_path / run), run
