"""Weights & Biases and Trackio, when a run asks for them (`report_to`): which to start, and starting them.

W&B (`report_to: wandb`, the default) runs online when an API key is configured (WANDB_API_KEY, or a
`wandb login` entry in ~/.netrc), otherwise offline: no account, no network, files under <run>/wandb that
`wandb sync` can upload later. WANDB_MODE, when set, wins.

Trackio (`report_to: trackio`, or `wandb,trackio` for both) keeps the runs in a local SQLite store under TRACKIO_DIR
that `make dashboard` serves on 127.0.0.1. It gets what metrics.jsonl gets, under the same names, with the resolved
config and, at the end, the test metrics. In the Trainer scripts too it is fed by the run folder's RunLogger rather
than by the Trainer's TrackioCallback: that callback logs the Trainer's own keys and stops with training, before the
test set is scored.

Any tracker failure is reported and the run goes on with local files only. `report_to: none` turns both off.
"""
from __future__ import annotations

import importlib.util
import json
import netrc
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from common.config import ConfigError, setting
from common.io import to_json

TRACKERS = ("wandb", "trackio")
PROJECT = "imdb-finetune"


def wandb_api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """WANDB_MODE if set; else online with a configured API key; else offline."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_api_key_configured() else "offline")


@dataclass
class TrackingArguments:
    report_to: str = setting("wandb", "wandb (offline without an API key), trackio (local dashboard: make dashboard), "
                                      "both as wandb,trackio, or none")
    run_name: str | None = setting(None, "the run's name in the tracker; default: the output folder's name")

    def __post_init__(self):
        trackers(self.report_to)  # a tracker that cannot start fails here, before any data or model is loaded


def trackers(report_to: str | list[str] | None) -> list[str]:
    """The trackers a report_to setting names ("wandb", "wandb,trackio", ["trackio"], "none"); an unknown name, or
    trackio without its package, is a one-line error."""
    names = report_to.split(",") if isinstance(report_to, str) else list(report_to or [])
    names = [n.strip().lower() for n in names if n.strip().lower() not in ("", "none")]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"report_to: expected wandb, trackio, both (wandb,trackio) or none, got {report_to!r}")
    if "trackio" in names and importlib.util.find_spec("trackio") is None:
        raise ConfigError("report_to: trackio is not installed (make setup installs it)")
    return names


def configure_trainer_tracking(report_to, output_dir) -> str:
    """For a Trainer script, at its start: report_to checked; W&B is the Trainer's own callback (offline without an
    account, our project, files in the run folder). Returns what the script's RunLogger reports to: trackio, if
    named (see the module's docstring; the script removes the Trainer's TrackioCallback), else none."""
    names = trackers(report_to)
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", wandb_mode())
        os.environ.setdefault("WANDB_PROJECT", PROJECT)
        os.environ.setdefault("WANDB_DIR", str(output_dir))
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    return "trackio" if "trackio" in names else "none"


def start_wandb(config: dict, output_dir: Path, run_name: str | None, project: str = PROJECT):
    """A W&B run, or None (with a warning) if W&B cannot start. Never raises."""
    try:
        import wandb

        return wandb.init(project=os.environ.get("WANDB_PROJECT", project), name=run_name, dir=str(output_dir),
                          config=config, mode=wandb_mode(), settings=wandb.Settings(init_timeout=60, silent=True))
    except Exception as e:  # noqa: BLE001 - tracking must never end a training run
        warnings.warn(f"W&B could not start ({type(e).__name__}: {e}); logging to local files only")
        return None


def start_trackio(config: dict, run_name: str, project: str = PROJECT):
    """A Trackio run in the local store (TRACKIO_DIR), or None (with a warning) if it cannot start."""
    import trackio

    try:
        return trackio.init(project=project, name=run_name, config=json.loads(to_json(config)), resume="allow",
                            embed=False, auto_log_cpu=False, auto_log_gpu=False)
    except Exception as e:  # noqa: BLE001 - tracking must never end a training run
        warnings.warn(f"Trackio could not start ({type(e).__name__}: {e}); logging to local files only")
        return None


def flatten(results: dict, prefix: str = "") -> dict:
    """{'test': {'accuracy': 0.9}} -> {'test/accuracy': 0.9}, keeping single numbers and strings only."""
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float, str)):
            flat[f"{prefix}{key}"] = value
    return flat
