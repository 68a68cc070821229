"""`make models` bookkeeping (tools/prepare_models.py), on a stand-in part: no real model needed."""
import importlib.metadata
import json
import shutil

import pytest

from tools import prepare_models as real_models
from common.config import UserError


def fake_part(monkeypatch, name, module, convert):
    monkeypatch.setitem(real_models.PARTS, name, real_models.Part(f"{name}-folder", "pytest", module, "__init__.py",
                                                                  convert))


def test_a_part_is_converted_once_and_its_files_hashed(tmp_path, monkeypatch):
    calls = []

    def convert(source, folder):
        calls.append(source)
        shutil.copy(source, folder / "copy.py")

    fake_part(monkeypatch, "fake", "_pytest", convert)
    folder = real_models.prepare("fake", tmp_path)
    assert real_models.prepare("fake", tmp_path) == folder and len(calls) == 1  # unchanged source: not again
    entry = json.loads((tmp_path / "manifest.json").read_text())["fake"]
    assert entry["version"] == importlib.metadata.version("pytest")
    assert entry["source_sha256"] == real_models.sha256(calls[0])
    assert entry["files"] == {"copy.py": real_models.sha256(folder / "copy.py")}
    real_models.prepare("fake", tmp_path, force=True)
    assert len(calls) == 2


def test_a_failed_conversion_leaves_no_folder(tmp_path, monkeypatch):
    def convert(source, folder):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    fake_part(monkeypatch, "broken", "_pytest", convert)
    with pytest.raises(RuntimeError, match="disk full"):
        real_models.prepare("broken", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_package_and_unknown_part_are_one_line_errors(tmp_path, monkeypatch):
    fake_part(monkeypatch, "gone", "no_such_module_for_this_test", lambda source, folder: None)
    assert not real_models.available("gone")
    with pytest.raises(UserError, match=r"not installed: pip install -e '.\[real\]'"):
        real_models.prepare("gone", tmp_path)
    with pytest.raises(UserError, match="unknown model part 'llama'"):
        real_models.prepare("llama", tmp_path)
