"""The Mistral benchmark runs end to end (its figures are printed by `make bench-mistral`, never asserted)."""
import pytest

from mistral.bench import main as bench


@pytest.mark.slow
def test_scoring_against_generation_runs(imdb_dir):
    report = bench(["--data_dir", str(imdb_dir), "--n_reviews", "10", "--max_length", "128",
                    "--n_tokenizer_reviews", "100"])
    assert set(report["reviews_per_second"]) == {"label_scoring", "greedy_generation"}
    assert report["n_reviews"] == 10 and report["speedup"] > 0


@pytest.mark.slow
def test_qlora_train_step_runs(imdb_dir):
    report = bench(["--data_dir", str(imdb_dir), "--train_step", "true", "--steps", "1", "--max_length", "64",
                    "--n_reviews", "10", "--n_tokenizer_reviews", "100"])
    assert report["seconds_per_step"] > 0 and report["tokens_per_second"] > 0
    assert report["trainable_parameters"] > 0


def test_scoring_agreement_counts_only_answered_reviews():
    from mistral.bench import scoring_agreement

    report = scoring_agreement({"a": [1, 0, 1, 1], "b": [0, 0, 0, 1]}, generated=[1, None, 0, 1], labels=[1, 0, 0, 1])
    assert report["generation_parsed"] == 3
    assert report["agrees_with_generation"] == {"a": 2 / 3, "b": 2 / 3}
    assert report["accuracy"] == {"generation": 3 / 4, "a": 3 / 4, "b": 3 / 4}
