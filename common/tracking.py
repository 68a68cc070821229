"""One way to log a run: a self-describing output folder, plus Weights & Biases when wanted.

Every run folder gets `config.yaml` (the resolved settings), `metrics.jsonl` (one JSON object per logged step,
with W&B's metric names: train/loss, eval/accuracy, ...) and, at the end, `results.json`.

W&B (`report_to: wandb`, the default) runs online when an API key is configured (WANDB_API_KEY, or a
`wandb login` entry in ~/.netrc), otherwise offline: no account, no network, files under <run>/wandb that
`wandb sync` can upload later. WANDB_MODE, when set, wins. Any W&B failure is reported and the run goes on
with local files only. `report_to: none` turns W&B off.
"""
from __future__ import annotations

import datetime as _dt
import json
import netrc
import os
import platform
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from common.config import ConfigError, setting
from common.io import atomic_write, to_json, write_json

REPORT_TO = ("wandb", "none")
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
    report_to: str = setting("wandb", "wandb (offline without an API key) or none")
    run_name: str | None = setting(None, "the run's name in the tracker; default: the output folder's name")


def check_report_to(report_to: str | None) -> str:
    value = (report_to or "none").lower()
    if value not in REPORT_TO:
        raise ConfigError(f"report_to: expected one of {', '.join(REPORT_TO)}, got {report_to!r}")
    return value


def redact(config: dict) -> dict:
    """Drop anything that looks like a credential before a config is written or sent anywhere. Credentials are
    strings: a number or a switch with such a name (average_tokens_across_devices) is a setting, and kept."""
    return {k: ("<redacted>" if _SECRET.search(k) and isinstance(v, str) and v else v) for k, v in config.items()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_info() -> dict:
    """Where and with what a run was made: recorded in every results.json."""
    import torch

    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def configure_trainer_wandb(report_to, output_dir) -> None:
    """For the HF Trainer's own W&B callback: offline without an account, our project, files in the run folder."""
    if "wandb" in (report_to or []):
        os.environ.setdefault("WANDB_MODE", wandb_mode())
        os.environ.setdefault("WANDB_PROJECT", PROJECT)
        os.environ.setdefault("WANDB_DIR", str(output_dir))
        Path(output_dir).mkdir(parents=True, exist_ok=True)


def start_wandb(config: dict, output_dir: Path, run_name: str | None, project: str = PROJECT):
    """A W&B run, or None (with a warning) if W&B cannot start. Never raises."""
    try:
        import wandb

        return wandb.init(project=os.environ.get("WANDB_PROJECT", project), name=run_name, dir=str(output_dir),
                          config=config, mode=wandb_mode(), settings=wandb.Settings(init_timeout=60, silent=True))
    except Exception as e:  # noqa: BLE001 - tracking must never end a training run
        warnings.warn(f"W&B could not start ({type(e).__name__}: {e}); logging to local files only")
        return None


class RunLogger:
    """Writes config.yaml and metrics.jsonl into output_dir, mirrors metrics to W&B, writes results.json.

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
        use_wandb = check_report_to(report_to) == "wandb"
        self.wandb = start_wandb(self.config, self.output_dir, run_name or self.output_dir.name) if use_wandb else None

    def log(self, metrics: dict, step: int) -> None:
        self._metrics.write(to_json({"step": step, **metrics}) + "\n")
        self._metrics.flush()
        if self.wandb is not None:
            try:
                self.wandb.log(metrics, step=step)
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"W&B log failed ({e}); further metrics go to local files only")
                self.wandb = None

    def finish(self, results: dict | None = None) -> dict | None:
        """Write results.json (with run_info added) and close; call once, at the very end of a run."""
        if results is not None:
            results = {**results, "run_info": run_info()}
            write_json(self.output_dir / "results.json", results)
        self._metrics.close()
        if self.wandb is not None:
            try:
                if results:
                    self.wandb.summary.update(flatten(results))
                self.wandb.finish()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"W&B finish failed ({e})")
            self.wandb = None
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
