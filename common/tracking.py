"""One way to log a run: a self-describing output folder, plus Weights & Biases and/or Trackio when wanted.

Every run folder gets `config.yaml` (the resolved settings), `metrics.jsonl` (one JSON object per logged step,
with W&B's metric names: train/loss, eval/accuracy, ...) and, at the end, `results.json`.

W&B (`report_to: wandb`, the default) runs online when an API key is configured (WANDB_API_KEY, or a
`wandb login` entry in ~/.netrc), otherwise offline: no account, no network, files under <run>/wandb that
`wandb sync` can upload later. WANDB_MODE, when set, wins.

Trackio (`report_to: trackio`, or `wandb,trackio` for both; the `[dashboard]` extra) keeps the runs in a local
SQLite store under TRACKIO_DIR that `make dashboard` serves on 127.0.0.1. It gets what metrics.jsonl gets, under
the same names, with the resolved config and, at the end, the test metrics. In the Trainer scripts too it is fed
from here rather than by the Trainer's TrackioCallback: that callback logs the Trainer's own keys and stops with
training, before the test set is scored.

Any tracker failure is reported and the run goes on with local files only. `report_to: none` turns both off.
"""
from __future__ import annotations

import importlib.util
import json
import netrc
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from common.config import ConfigError, setting
from common.environment import run_info
from common.io import atomic_write, follow_umask, to_json, write_json

TRACKERS = ("wandb", "trackio")
PROJECT = "imdb-finetune"
_SECRET = re.compile(r"(api_?key|token|password|secret)", re.IGNORECASE)


def run_folder_setting(default: str):
    """output_dir of a script whose run folder holds a run's config, metrics and results (the baseline, evaluate)."""
    return setting(default, "the run folder: config, metrics, results")


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
        raise ConfigError("report_to: trackio is not installed: pip install -e '.[dashboard]'")
    return names


def redact(config: dict) -> dict:
    """Drop anything that looks like a credential before a config is written or sent anywhere. Credentials are
    strings: a number or a switch with such a name (average_tokens_across_devices) is a setting, and kept."""
    return {k: ("<redacted>" if _SECRET.search(k) and isinstance(v, str) and v else v) for k, v in config.items()}


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


class RunLogger:
    """Writes config.yaml and metrics.jsonl into output_dir, mirrors metrics to W&B and/or Trackio, writes
    results.json.

    resume_step: continuing a run from a checkpoint at that step; metrics.jsonl keeps its rows up to it.
    """

    def __init__(self, output_dir: str | Path, config: dict, report_to: str | None = "wandb",
                 run_name: str | None = None, resume_step: int | None = None):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.config = redact(config)
        atomic_write(self.output_dir / "config.yaml",
                     lambda tmp: tmp.write_text(yaml.safe_dump(json.loads(to_json(self.config)), sort_keys=False)))
        self.metrics_path = self.output_dir / "metrics.jsonl"
        if resume_step is not None and self.metrics_path.exists():
            # a resumed run replays the steps after its checkpoint: drop what the interrupted run logged for them
            kept = [to_json(r) + "\n" for r in read_metrics(self.metrics_path) if r.get("step", 0) <= resume_step]
            atomic_write(self.metrics_path, lambda tmp: tmp.write_text("".join(kept)))
        self._metrics = open(self.metrics_path, "a" if resume_step is not None else "w")
        names, run_name = trackers(report_to), run_name or self.output_dir.name
        self.wandb = start_wandb(self.config, self.output_dir, run_name) if "wandb" in names else None
        self.trackio = start_trackio(self.config, run_name) if "trackio" in names else None
        self.last_step = resume_step or 0

    def log(self, metrics: dict, step: int) -> None:
        self._metrics.write(to_json({"step": step, **metrics}) + "\n")
        self._metrics.flush()
        self.last_step = max(self.last_step, step)
        plain = json.loads(to_json(metrics))  # numpy and torch scalars as plain numbers, once for both trackers
        for name in ("wandb", "trackio"):
            tracker = getattr(self, name)
            if tracker is not None:
                try:
                    tracker.log(plain, step=step)
                except Exception as e:  # noqa: BLE001
                    warnings.warn(f"{name} log failed ({e}); further metrics go to the other places only")
                    setattr(self, name, None)

    def finish(self, results: dict | None = None) -> dict | None:
        """Write results.json (with run_info added) and close; call once, at the very end of a run."""
        if results is not None:
            results = {**results, "run_info": run_info()}
            write_json(self.output_dir / "results.json", results)
        follow_umask(self.output_dir)  # what libraries wrote into the run folder too (weights, adapters)
        self._metrics.close()
        if self.wandb is not None:
            try:
                if results:
                    self.wandb.summary.update(flatten(results))
                self.wandb.finish()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"W&B finish failed ({e})")
            self.wandb = None
        if self.trackio is not None:
            try:
                # Trackio has no run summary: the test metrics are logged once, at the run's last step
                final = {k: v for k, v in flatten(results or {}).items()
                         if k.startswith("test/") and isinstance(v, (int, float)) and not isinstance(v, bool)}
                if final:
                    self.trackio.log(final, step=self.last_step)
                self.trackio.finish()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"Trackio finish failed ({e})")
            self.trackio = None
        return results


def flatten(results: dict, prefix: str = "") -> dict:
    """{'test': {'accuracy': 0.9}} -> {'test/accuracy': 0.9}, keeping single numbers and strings only."""
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float, str)):
            flat[f"{prefix}{key}"] = value
    return flat


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl; a last line cut off by a crash is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
