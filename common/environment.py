"""Where and with what a run was made (`run_info`, in every results.json): code, packages, machine, memory.

The packages are named by the lock (requirements.lock, written by `make lock`, installed by `make setup`): its
sha256, and whether this environment holds exactly the versions it pins for this Python and platform.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# Installed beside a CUDA build of torch, outside the lock (`make setup` installs torch by its own logic), or the
# installer and this project itself: never compared with the lock.
NOT_LOCKED = re.compile(r"^(nvidia-.*|cuda-.*|triton|pip|imdb-finetune)$")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=ROOT)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def peak_memory() -> dict:
    """This process's peak memory so far, in MiB: resident set size (the kernel's high-water mark, which covers
    tokenisation and data as well as tensors) and, on a GPU, the most memory torch's allocator has held."""
    import resource

    import torch

    peak = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: KiB
    if torch.cuda.is_available():
        peak["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def malloc_in_use() -> str | None:
    """The C allocator this process runs on: jemalloc or tcmalloc when one is loaded (LD_PRELOAD), else the C
    library's own (glibc); None where /proc/self/maps is not there to say (not Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    return next((name for name in ("jemalloc", "tcmalloc") if f"lib{name}" in maps), "glibc")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name as the kernel reports it (e.g. "AMD EPYC 9R14"), else what platform knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """The lock's pins that apply here (environment markers evaluated for this Python and platform), by
    normalised name."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            (spec,) = req.specifier  # a lock pins: name==version
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def installed_versions() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    return {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}


def lock_differences(lock: Path = LOCK) -> list[str]:
    """How this environment differs from the lock, one line per package; empty when it holds exactly the lock.
    A local version label (torch's +cpu) is the same release."""
    locked = locked_versions(lock)
    installed = {k: v for k, v in installed_versions().items() if not NOT_LOCKED.match(k)}
    lines = []
    for name in sorted(set(locked) | set(installed)):
        want, have = locked.get(name), installed.get(name)
        if have is None:
            lines.append(f"{name}: locked {want}, not installed")
        elif want is None:
            if name != "setuptools":  # the venv's own, where nothing locked asks for it (as pip freeze hides it)
                lines.append(f"{name}: {have} installed, not in the lock")
        elif have.split("+")[0] != want:
            lines.append(f"{name}: locked {want}, installed {have}")
    return lines


def lock_record(lock: Path = LOCK) -> dict:
    """results.json's record of the environment: the lock's sha256 and whether this environment matches it."""
    if not lock.is_file():
        return {"lock_sha256": None, "installed_as_locked": False}
    differences = lock_differences(lock)
    record = {"lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(), "installed_as_locked": not differences}
    if differences:
        record["differences_from_lock"] = differences[:20]
    return record


def run_info() -> dict:
    """Where and with what a run was made: recorded in every results.json."""
    import torch

    from common.precision import native_bf16_cpu

    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "cpu": cpu_model(),
        "cpu_native_bf16": native_bf16_cpu(),  # what `auto` precision decides on, where there is no GPU
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **peak_memory(),
        "malloc": malloc_in_use(),  # the allocator sets CPU speed and memory too (tools/bench_allocator.py)
        **lock_record(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info
