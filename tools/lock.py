"""The lock, requirements.lock: every package `make setup` installs, as name==version, for each Python and platform.

    make lock                        # re-resolve it with uv (the only way versions change); docs/testing.md
    python -m tools.lock             # does this environment hold exactly the lock's versions? (make setup asks)

`make lock` runs `uv pip compile` over pyproject.toml with every extra, universally (one pin per package, or one
per Python version where they must differ, with environment markers), torch held at the lock's own version unless
--torch names another. torch's CUDA-only dependencies (nvidia-*, cuda-*, triton) are left out: `make setup` puts
torch in by its own logic (a CPU build where there is no GPU), and pip adds those with a CUDA build.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from common.config import UserError, parse, run_main, setting
from common.environment import LOCK, NOT_LOCKED, ROOT, lock_differences, locked_versions
from common.io import atomic_write

HEADER = """\
# The lock: every package `make setup` installs (all extras), pinned for Python {python}+ on any platform.
# Written by `make lock` (python -m tools.lock --write true: uv {uv} pip compile --universal); do not edit by hand.
# torch's CUDA-only dependencies are left out: make setup installs torch by its own logic (docs/testing.md).
"""


@dataclass
class LockArguments:
    write: bool = setting(False, "re-resolve the lock with uv and write it; false: check this environment against it")
    uv: str = setting("uv", "the uv executable that resolves (make lock installs one under .cache/)")
    torch: str | None = setting(None, "the torch version to lock; default: the one the lock pins now")
    python: str = setting("3.11", "the oldest Python the lock serves (pyproject's requires-python)")


def keep(line: str) -> bool:
    """A resolved line that belongs in the lock: not one of torch's CUDA-only dependencies."""
    name = re.split(r"[=;<> ]", line.strip(), maxsplit=1)[0]
    return bool(name) and not line.startswith("#") and not NOT_LOCKED.match(name.lower())


def compile_lock(uv: str, torch_version: str, python: str) -> str:
    """The lock's text as uv resolves it today."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as pin:
        pin.write(f"torch=={torch_version}\n")
        pin.flush()
        try:
            out = subprocess.run([uv, "pip", "compile", str(ROOT / "pyproject.toml"), "--all-extras", "--universal",
                                  "--python-version", python, "--no-annotate", "--no-header", "--quiet",
                                  "--constraint", pin.name], capture_output=True, text=True, check=True)
            version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
        except FileNotFoundError:
            raise UserError(f"uv not found at {uv!r}: make lock installs it") from None
        except subprocess.CalledProcessError as e:
            raise UserError(f"uv could not resolve the lock: {e.stderr.strip().splitlines()[-1]}") from None
    lines = [line for line in out.stdout.splitlines() if keep(line)]
    return HEADER.format(python=python, uv=version) + "\n".join(lines) + "\n"


SETTINGS = (LockArguments,)


def main(argv=None) -> int:
    (args,) = parse(SETTINGS, argv)
    if args.write:
        torch_version = args.torch or locked_versions(LOCK)["torch"]
        text = compile_lock(args.uv, torch_version, args.python)
        atomic_write(LOCK, lambda tmp: tmp.write_text(text))
        print(f"{LOCK.name}: {sum(1 for line in text.splitlines() if keep(line))} pins (torch {torch_version}); "
              "now: make setup in a fresh venv, make test, make test-real, make small (docs/testing.md)")
        return 0
    differences = lock_differences(LOCK)
    for line in differences:
        print(line, file=sys.stderr)
    if differences:
        print(f"error: this environment ({sys.prefix}) differs from {LOCK.name} in {len(differences)} package(s); "
              "make setup installs the lock", file=sys.stderr)
        return 1
    print(f"{sys.prefix}: every package as {LOCK.relative_to(ROOT)} pins it")
    return 0


if __name__ == "__main__":
    run_main(main)
