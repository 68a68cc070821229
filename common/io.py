"""Small file helpers: writes that never leave a half-written file under the final name."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def current_umask() -> int:
    """The process's umask. os.umask can only read it by setting it, so it is set back at once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(folder: str | Path) -> None:
    """Give every file and folder under folder the permissions open() and mkdir() would under the umask: libraries
    that write through temporary files (safetensors' weights, mkstemp) leave them owner-only."""
    mask = current_umask()
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), then rename tmp_path to path, so readers see the old file or the whole new one. The
    file gets the permissions open() would give it under the umask (mkstemp's own are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield path.tmp to write a folder into; swap it in for path when the block ends without error. An interrupted
    write leaves only *.tmp (removed on error), never a half-written folder under the final name. The old folder is
    moved aside (path.old), the new one renamed in, and only then is the old one deleted: a failed swap puts the old
    one back, and a process killed between the two renames still has it, whole, in path.old."""
    path = Path(path)
    tmp = staging_folder(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, path)


def staging_folder(path: Path) -> Path:
    """Where a folder is written before swap_in puts it under its name (path.tmp: never taken for a checkpoint)."""
    return path.with_name(path.name + ".tmp")


def swap_in(tmp: Path, path: Path) -> None:
    """Replace folder `path` by the finished folder `tmp`, as atomic_folder does when its block ends."""
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    follow_umask(tmp)
    if path.exists():
        path.rename(old)
    try:
        tmp.rename(path)
    except BaseException:
        if old.exists() and not path.exists():
            old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def numbered(folder: Path, prefix: str, marker: str) -> list[Path]:
    """Finished checkpoints PREFIX-N in folder (holding `marker`), by N: an interrupted save (*.tmp) is not one."""
    found = [p for p in folder.glob(f"{prefix}-*") if p.name[len(prefix) + 1:].isdigit() and (p / marker).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(prefix) + 1:]))


def find_checkpoint(value: str | None, folder: str | Path, prefix: str, marker: str) -> Path | None:
    """The checkpoint that `resume_from_checkpoint` names: a checkpoint folder, or "latest" (the newest finished
    PREFIX-N in folder); None when it names none."""
    from common.config import UserError

    if value in (None, ""):
        return None
    if value == "latest":
        found = numbered(Path(folder), prefix, marker) if Path(folder).is_dir() else []
        if not found:
            raise UserError(f"no checkpoint to resume in {folder}")
        return found[-1]
    if not (Path(value) / marker).is_file():
        raise UserError(f"{value}: not a checkpoint folder (no {marker})")
    return Path(value)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()  # numpy / torch scalars
    elif hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(obj: Any, **kwargs) -> str:
    return json.dumps(_jsonable(obj), **kwargs)


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(to_json(obj, indent=2) + "\n"))


def check_model_path(name: str) -> None:
    """A model name that is a path rather than a Hub id ("org/name" or "name") must be an existing folder."""
    from common.config import UserError

    local = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or Path(name).exists()
    if local and not Path(name).expanduser().is_dir():
        raise UserError(f"model folder not found: {name}")


def model_load_error(name: str, what: str, error: BaseException):
    """A one-line UserError for a failed from_pretrained. For a gated Hub model it says what to do: the Hub's message
    runs to several lines, and its first line alone drops the access URL."""
    from common.config import UserError, first_line

    if "gated" in str(error).lower():
        return UserError(f"{name} is a gated model: accept its terms at https://huggingface.co/{name}, then log in "
                         "here with the same account (hf auth login, or set HF_TOKEN)")
    return UserError(f"cannot load {what} from {name}: {first_line(error)}")
