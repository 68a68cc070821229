"""Folder writes that never lose the last complete folder."""
from pathlib import Path

import pytest

from common.io import atomic_folder


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
