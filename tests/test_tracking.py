import json

import pytest
import yaml

from common.config import ConfigError
from common import trackers as trk
from common.run_folder import RunLogger, read_metrics
from common.trackers import trackers, wandb_mode


def run(tmp_path, report_to):
    logger = RunLogger(tmp_path / "run", {"lr": 0.1, "wandb_api_key": "secret-value", "seed": 1,
                                                 "average_tokens_across_devices": True}, report_to)
    logger.log({"train/loss": 0.7, "train/learning_rate": 0.1}, step=1)
    logger.log({"eval/accuracy": 0.5}, step=2)
    logger.finish({"test": {"accuracy": 0.9, "n": 10}})
    return tmp_path / "run"


def check_files(folder):
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["lr"] == 0.1 and config["wandb_api_key"] == "<redacted>"
    assert config["average_tokens_across_devices"] is True  # a setting whose name says token, not a credential
    rows = read_metrics(folder / "metrics.jsonl")
    assert rows == [{"step": 1, "train/loss": 0.7, "train/learning_rate": 0.1}, {"step": 2, "eval/accuracy": 0.5}]
    results = json.loads((folder / "results.json").read_text())
    assert results["test"]["accuracy"] == 0.9
    assert {"date", "git_commit", "torch", "device", "peak_rss_mib"} <= set(results["run_info"])
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".txt", ".log"):
            assert "secret-value" not in path.read_text(errors="ignore"), path


def test_report_to_none_writes_local_files_only(tmp_path):
    folder = run(tmp_path, "none")
    check_files(folder)
    assert not (folder / "wandb").exists()


@pytest.mark.slow
def test_wandb_offline_without_account(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    folder = run(tmp_path, "wandb")
    check_files(folder)
    assert list((folder / "wandb").glob("offline-run-*")), "W&B offline run folder missing"


def test_wandb_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_bad_report_to(tmp_path):
    with pytest.raises(ConfigError, match="report_to: expected wandb, trackio, both"):
        RunLogger(tmp_path, {}, "tensorboard")
    with pytest.raises(ConfigError, match="got 'wandb,mlflow'"):
        trackers("wandb,mlflow")


def test_report_to_names_one_tracker_both_or_none(monkeypatch):
    monkeypatch.setattr(trk.importlib.util, "find_spec", lambda name: object())  # as if trackio were installed
    assert trackers("wandb,trackio") == ["wandb", "trackio"]
    assert trackers(["trackio"]) == ["trackio"]
    assert trackers("none") == [] and trackers(["none"]) == [] and trackers(None) == []


@pytest.mark.parametrize("script", ["baseline.tfidf", "distilbert.train_loop", "mistral.evaluate",
                                    "distilbert.train_trainer", "mistral.train_sft"])
def test_trackio_without_its_extra_fails_at_start_with_how_to_install_it(script, monkeypatch, tmp_path):
    """Before any data or model is read: the data folder does not even exist."""
    import importlib

    real = trk.importlib.util.find_spec
    monkeypatch.setattr(trk.importlib.util, "find_spec", lambda name: None if name == "trackio" else real(name))
    main = importlib.import_module(script).main
    with pytest.raises(ConfigError, match=r"^report_to: trackio is not installed \(make setup installs it\)$"):
        main(["--report_to", "wandb,trackio", "--data_dir", str(tmp_path / "absent"),
              "--output_dir", str(tmp_path / "run")])


def test_resume_keeps_metrics_up_to_the_checkpoint(tmp_path):
    first = RunLogger(tmp_path, {}, "none")
    for step in (1, 2, 3):
        first.log({"train/loss": 1.0}, step=step)
    first.finish()
    second = RunLogger(tmp_path, {}, "none", resume_step=2)  # the checkpoint was at step 2
    second.log({"train/loss": 0.5}, step=3)
    second.finish()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["train/loss"]) for r in rows] == [(1, 1.0), (2, 1.0), (3, 0.5)]


def test_peak_memory_keeps_the_high_water_mark_in_mib_after_memory_is_freed():
    # in a fresh process, so that nothing this test session allocated before sets the mark
    import subprocess
    import sys

    code = (
        "from common.environment import peak_memory\n"
        "peak_before = peak_memory()['peak_rss_mib']\n"
        "now = int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024\n"  # kB
        "block = b'x' * (512 * 2**20)\n"  # written, so every page is resident
        "del block\n"
        "print(now, peak_before, peak_memory()['peak_rss_mib'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    now, peak_before, peak_after = map(float, out.stdout.split())
    assert peak_after >= now + 500  # the freed 512 MiB still counts (less a few pages the kernel let go meanwhile)
    assert peak_after < max(now, peak_before) + 600  # MiB, not KiB or bytes
