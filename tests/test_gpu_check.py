"""tools/gpu_check.py: its checks run end to end at small sizes on CPU, so the GPU run is not their first run."""
import json

import numpy as np
import pandas as pd
import pytest

from tools import gpu_check


def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gpu_check.json")]) == 0
    assert capsys.readouterr().out.strip().count("\n") == 0
    assert not (tmp_path / "gpu_check.json").exists()


def test_review_lengths_follow_the_fitted_lognormal(tmp_path):
    words = pd.read_parquet(gpu_check.write_reviews(tmp_path, 2000) / "train.parquet")["text"].str.split().str.len()
    assert 200 < np.median(words) < 300 and 0.08 < (words > 510).mean() < 0.25  # real: median 233, 14.9% over 512


@pytest.mark.slow
def test_checks_run_at_small_size_on_cpu_and_fill_the_table(tmp_path, monkeypatch):
    """The checks' code paths, end to end on CPU; the speeds they divide are replaced by ones worked by hand (the
    runs' own depend on the machine): 60 against 15 samples/s, 20 against 1 review/s."""
    import distilbert.bench
    import mistral.bench

    real_run, real_timing = distilbert.bench.run_mode, mistral.bench.time_scoring_and_generation
    speeds = {"length_grouped": 60.0, "pad_to_max_length": 15.0}

    def run_mode(cfg, model, tmp, batching, max_steps=None):
        ran = real_run(cfg, model, tmp, batching, max_steps)
        return ran if max_steps else {**ran, "train_step_samples_per_second": speeds[batching]}

    def timing(*args, **kwargs):
        _, scored, generated = real_timing(*args, **kwargs)
        return {"label_scoring": 20.0, "greedy_generation": 1.0}, scored, generated
    monkeypatch.setattr(distilbert.bench, "run_mode", run_mode)
    monkeypatch.setattr(mistral.bench, "time_scoring_and_generation", timing)
    (tmp_path / "d").mkdir()
    (tmp_path / "m").mkdir()
    distilbert = gpu_check.distilbert_batching(tmp_path / "d", size="small", n_samples=128)
    assert distilbert["speedup"] == 4.0
    # 3 epochs of 34,704 reviews at 60 samples/s: 104,112 samples in 1,735.2 s, 28.92 minutes; the goal (3) not met
    assert distilbert["projected_3_epochs_minutes"]["length_grouped"] == pytest.approx(28.92)
    assert distilbert["goal_3_epochs_at_most_3_minutes"] is False
    mistral = gpu_check.mistral_7b(tmp_path / "m", size="small", device="cpu", n_reviews=16, steps=1)
    assert mistral["scoring_vs_generation"]["speedup"] == 20.0 and mistral["scoring_vs_generation"]["goal_at_least_10x"]
    assert mistral["qlora_step"]["seconds_per_step"] > 0 and mistral["qlora_step"]["trainable_parameters"] > 0
    mistral["qlora_step"]["peak_gpu_memory_gb"] = 0.0  # the table's GPU figure; none on CPU
    report = {"date": "today", "gpu": "cpu", "versions": {}, "checks": {
        "gpu tests": {"tests": 5, "failures": 0, "errors": 0, "skipped": 0, "passed": 5},
        "distilbert": distilbert, "mistral 7b": mistral, "broken": {"error": "RuntimeError: boom"}}}
    text = gpu_check.table(json.loads(json.dumps(report)))
    assert "5 passed, 0 failed" in text and "FAILED" in text and "scoring / generation" in text
    assert "3 epochs of 34,704 reviews, length-grouped" in text and "4.00x for length-grouped" in text
    assert "20.0x" in text and "<= 3 min: NOT met" in text
