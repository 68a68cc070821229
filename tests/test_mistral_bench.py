"""The Mistral benchmark end to end: what it classifies and trains is checked, and the figures it reports are checked
against a fake clock whose durations are worked by hand (real speeds depend on the machine)."""
import types

import pytest

from mistral import bench
from mistral.bench import main


def fake_clock(monkeypatch, *readings):
    """bench's time.perf_counter returns these readings, in order, and fails if asked once more."""
    ticks = iter(readings)
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))


@pytest.mark.slow
def test_scoring_against_generation_reports_the_ratio_of_its_timed_rates(imdb_dir, monkeypatch):
    """10 reviews: scored in 2 s (5 reviews/s), generated in 10 s (1 review/s): a 5x speed-up."""
    fake_clock(monkeypatch, 100.0, 102.0, 102.0, 112.0)
    report = main(["--data_dir", str(imdb_dir), "--n_reviews", "10", "--max_length", "128",
                   "--n_tokenizer_reviews", "100"])
    assert report["n_reviews"] == 10
    assert report["reviews_per_second"] == {"label_scoring": 5.0, "greedy_generation": 1.0}
    assert report["speedup"] == 5.0
    assert 0 <= report["generation_parsed"] <= 10


@pytest.mark.slow
def test_qlora_train_step_reports_seconds_and_tokens_per_step_from_its_clock(imdb_dir, monkeypatch):
    """3 timed steps in 6 s: 2 s a step, 64 tokens a step, so 32 tokens/s."""
    fake_clock(monkeypatch, 50.0, 56.0)
    report = main(["--data_dir", str(imdb_dir), "--train_step", "true", "--steps", "3", "--max_length", "64",
                   "--n_reviews", "10", "--n_tokenizer_reviews", "100"])
    assert (report["seconds_per_step"], report["tokens_per_second"]) == (2.0, 32.0)
    # LoRA r 64 on q_proj and v_proj of the small random Mistral (4 layers, hidden 256, 2 KV heads of 32):
    # q: 64 x (256 + 256), v: 64 x (256 + 64), per layer
    assert report["trainable_parameters"] == 4 * (64 * (256 + 256) + 64 * (256 + 64))


def test_scoring_agreement_counts_only_answered_reviews():
    from mistral.bench import scoring_agreement

    report = scoring_agreement({"a": [1, 0, 1, 1], "b": [0, 0, 0, 1]}, generated=[1, None, 0, 1], labels=[1, 0, 0, 1])
    assert report["generation_parsed"] == 3
    assert report["agrees_with_generation"] == {"a": 2 / 3, "b": 2 / 3}
    assert report["accuracy"] == {"generation": 3 / 4, "a": 3 / 4, "b": 3 / 4}
