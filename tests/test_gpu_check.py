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
    (tmp_path / "d").mkdir()
    (tmp_path / "m").mkdir()
    distilbert = gpu_check.distilbert_batching(tmp_path / "d", size="small", n_samples=128)
    # reviews average ~300 tokens: padding every batch to 512 costs far more than length-grouped batches
    assert distilbert["speedup"] > 1.2
    assert distilbert["projected_3_epochs_minutes"]["length_grouped"] < distilbert["projected_3_epochs_minutes"][
        "pad_to_max_length"]
    mistral = gpu_check.mistral_7b(tmp_path / "m", size="small", device="cpu", n_reviews=16, steps=1)
    assert mistral["scoring_vs_generation"]["speedup"] > 1  # one forward pass per 8 reviews vs 5 per review
    assert mistral["qlora_step"]["seconds_per_step"] > 0 and mistral["qlora_step"]["trainable_parameters"] > 0
    mistral["qlora_step"]["peak_gpu_memory_gb"] = 0.0  # the table's GPU figure; none on CPU
    report = {"date": "today", "gpu": "cpu", "versions": {}, "checks": {
        "gpu tests": {"tests": 5, "failures": 0, "errors": 0, "skipped": 0, "passed": 5},
        "distilbert": distilbert, "mistral 7b": mistral, "broken": {"error": "RuntimeError: boom"}}}
    text = gpu_check.table(json.loads(json.dumps(report)))
    assert "5 passed, 0 failed" in text and "FAILED" in text and "scoring / generation" in text
    assert "3 epochs of 34,704 reviews, length-grouped" in text
