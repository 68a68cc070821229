"""The Mistral benchmark end to end: its arithmetic and what it trains are checked, not the speeds it prints
(they depend on the machine)."""
import pytest

from mistral.bench import main as bench


@pytest.mark.slow
def test_scoring_against_generation_runs(imdb_dir):
    report = bench(["--data_dir", str(imdb_dir), "--n_reviews", "10", "--max_length", "128",
                    "--n_tokenizer_reviews", "100"])
    assert set(report["reviews_per_second"]) == {"label_scoring", "greedy_generation"}
    assert report["n_reviews"] == 10
    # both methods classified the same 10 reviews: accuracies are multiples of 1/10, agreement of 1/parsed
    assert all(round(a * 10, 6).is_integer() for a in report["accuracy"].values())
    assert 0 <= report["generation_parsed"] <= 10


@pytest.mark.slow
def test_qlora_train_step_runs(imdb_dir):
    report = bench(["--data_dir", str(imdb_dir), "--train_step", "true", "--steps", "1", "--max_length", "64",
                    "--n_reviews", "10", "--n_tokenizer_reviews", "100"])
    assert report["max_length"] == 64 and report["seconds_per_step"] > 0  # one sequence of 64 tokens a step
    # LoRA r 64 on q_proj and v_proj of the small random Mistral (4 layers, hidden 256, 2 KV heads of 32):
    # q: 64 x (256 + 256), v: 64 x (256 + 64), per layer
    assert report["trainable_parameters"] == 4 * (64 * (256 + 256) + 64 * (256 + 64))


def test_scoring_agreement_counts_only_answered_reviews():
    from mistral.bench import scoring_agreement

    report = scoring_agreement({"a": [1, 0, 1, 1], "b": [0, 0, 0, 1]}, generated=[1, None, 0, 1], labels=[1, 0, 0, 1])
    assert report["generation_parsed"] == 3
    assert report["agrees_with_generation"] == {"a": 2 / 3, "b": 2 / 3}
    assert report["accuracy"] == {"generation": 3 / 4, "a": 3 / 4, "b": 3 / 4}
