"""Once set up (`make setup`, `make models`), nothing needs a package index or the Hub: no make target that runs an
experiment, benchmark, report or test calls pip, `models` does nothing once it has made every part, and `make small`
runs with PIP_NO_INDEX=1 HF_HUB_OFFLINE=1."""
import os
import re
import subprocess

import pytest

from fixtures.synthetic import write_imdb
from tests.conftest import MAKE, ROOT

SET_UP = ["-o", "models/.complete", "-o", ".venv/bin/python"]  # make: take these as made, as after set-up
SET_UP_TARGETS = {"setup", "torch", "lock", "gpu-wheels", "clean"}  # the ones that install: they may need an index
VARIABLES = {"seeds": ["TARGET=small-loop"], "compare": ["A=runs/a", "B=runs/b"], "plots": ["RUN=runs/a"]}


def phony_targets() -> set[str]:
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    return set(line.split(":", 1)[1].split())


def recipe(target: str) -> str:
    """The commands `make TARGET` would run on a machine that is set up (make -n prints, runs nothing)."""
    out = subprocess.run([*MAKE, "-n", *SET_UP, target, *VARIABLES.get(target, [])], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_recipe_check_sees_a_pip_call():
    assert re.search(r"\bpip\b", recipe("setup"))


@pytest.mark.parametrize("target", sorted(phony_targets() - SET_UP_TARGETS))
def test_no_target_calls_pip_once_set_up(target):
    commands = recipe(target)
    assert commands.strip() or target == "models"
    assert not re.search(r"\bpip\b", commands), commands


def test_models_does_nothing_once_made():
    made = ROOT / "models" / ".complete"
    if not made.is_file():
        pytest.skip("make models has not run here")
    for source in ("requirements.lock", "tools/prepare_models.py"):
        if (ROOT / source).stat().st_mtime > made.stat().st_mtime:
            pytest.skip(f"{source} is newer than models/.complete: make models would convert again")
    out = subprocess.run([*MAKE, "-n", "models"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert [line for line in out.stdout.splitlines() if "Nothing to be done" not in line] == []


def test_models_converts_where_only_some_parts_are(tmp_path):
    """A test that needs one part converts it, and writes models/manifest.json: make models must still convert the
    others (a manifest alone once made `make small` miss MiniLM after `make test` on a fresh clone)."""
    for name in ("Makefile", "requirements.lock", "tools/prepare_models.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "manifest.json").write_text('{"smollm2": {}}')
    out = subprocess.run([*MAKE, "-n", "-o", ".venv/bin/python", "models"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert "-m tools.prepare_models" in out.stdout, out.stdout + out.stderr
    (tmp_path / "models" / ".complete").touch()
    out = subprocess.run([*MAKE, "-n", "-o", ".venv/bin/python", "models"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert "-m tools.prepare_models" not in out.stdout, out.stdout


@pytest.mark.real_model
@pytest.mark.slow
def test_make_small_runs_with_no_index_and_no_hub(tmp_path):
    """The whole target, as a user runs it offline: its three runs (2 steps each, on synthetic reviews), plots and
    table."""
    if not (ROOT / "models" / ".complete").is_file():
        pytest.skip("make models has not run here")
    data = write_imdb(tmp_path / "imdb", n_train=600, n_test=1000)
    env = {**os.environ, "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    out = subprocess.run([*MAKE, "small", f"OUT={tmp_path / 'small'}", f"DATA_DIR={data}", "REPORT_TO=none",
                          "ARGS=--max_steps 2 --eval_steps 2 --save_steps 2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for run in ("distilbert_loop", "distilbert_trainer", "mistral_sft"):
        assert (tmp_path / "small" / run / "results.json").is_file(), run
        assert (tmp_path / "small" / run / "plots" / "training.png").is_file(), run
    assert (tmp_path / "small" / "RESULTS.md").is_file()
