import json
import subprocess
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import distilbert.train_loop as loop
from common.config import UserError
from common.environment import git_commit, peak_memory
from distilbert.data import LengthGroupedBatches, RandomBatches, padding_collator
from tests.conftest import ROOT, run_on_synthetic

CONFIG = str(ROOT / "configs/distilbert_loop.yaml")


def args(model, data, out, tmp_path, *extra):
    return ["--config", CONFIG, "--model_name_or_path", str(model), "--data_dir", str(data), "--output_dir", str(out),
            "--cache_dir", str(tmp_path / "cache"), "--report_to", "none", "--warmup_steps", "5",
            "--learning_rate", "1e-3", "--logging_steps", "4", "--save_steps", "8", *extra]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(tiny_distilbert, tmp_path_factory):
    """One 3-epoch run of the loop on synthetic data, shared by the tests that read its folder."""
    return run_on_synthetic(tmp_path_factory, "loop", loop.main, args, tiny_distilbert, "--num_train_epochs", "3")


def test_loop_learns_and_writes_run_folder(trained_run):
    out, results = trained_run
    assert results["test"]["accuracy"] > 0.9
    saved = json.loads((out / "results.json").read_text())
    assert {"test", "validation", "manifest", "wall_time_s", "train_samples_per_second", "best_step",
            "run_info"} <= set(saved)
    assert {"accuracy", "f1", "accuracy_negative", "accuracy_positive", "confusion_matrix", "n"} <= set(saved["test"])
    assert saved["test"]["n"] == saved["manifest"]["splits"]["test"]["size"]

    rows = read_jsonl(out / "metrics.jsonl")
    train_rows = [r for r in rows if "train/loss" in r]
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "train/global_step",
            "train/samples_per_second"} <= set(train_rows[0])
    assert train_rows[-1]["train/loss"] < train_rows[0]["train/loss"] - 0.1
    eval_rows = [r for r in rows if "eval/accuracy" in r]
    assert len(eval_rows) == 3 and {"eval/loss", "eval/f1"} <= set(eval_rows[0])
    # the best model is the one with the best validation accuracy, and it loads as-is
    best = max(eval_rows, key=lambda r: r["eval/accuracy"])
    assert saved["validation"]["accuracy"] == best["eval/accuracy"]
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out / "best_model")
    assert model.config.id2label[1] == "positive"
    assert (out / "config.yaml").is_file()
    ckpt = sorted((out / "checkpoints").iterdir())[-1]
    # Accelerate's save_state (weights, optimizer, the registered scheduler, RNG states), plus a loadable model folder
    assert {"model.safetensors", "optimizer.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl", "state.json",
            "config.json", "tokenizer.json"} <= {p.name for p in ckpt.iterdir()}
    assert AutoModelForSequenceClassification.from_pretrained(ckpt).config.id2label[1] == "positive"


class LossScaledAccelerator(loop.Accelerator):
    """fp16's GradScaler path on CPU, where Accelerate makes none: autocast to fp16, a loss scale that overflows
    every few steps (the scaler then skips the update and cuts the scale by 4), and grows back after 3 good steps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.native_amp = True
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, growth_factor=16.0, backoff_factor=0.25,
                                           growth_interval=3)


@pytest.mark.parametrize("device, precision", [
    ("cpu", "fp32"), ("cpu", "fp16"),
    pytest.param("cuda", "bf16", marks=pytest.mark.gpu), pytest.param("cuda", "fp16", marks=pytest.mark.gpu)])
def test_resume_matches_uninterrupted(device, precision, tiny_distilbert, imdb_dir, tmp_path, monkeypatch, request):
    common = ["--num_train_epochs", "2", "--max_train_samples", "256", "--save_total_limit", "5",
              "--precision", precision]
    if device == "cpu":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        if precision == "fp16":
            monkeypatch.setattr(loop, "Accelerator", LossScaledAccelerator)
    else:
        request.getfixturevalue("deterministic_cuda")
    full = loop.main(args(tiny_distilbert, imdb_dir, tmp_path / "full", tmp_path, *common))

    original = loop.save_checkpoint

    def interrupt_after_step_24(path, *a, **kw):
        original(path, *a, **kw)
        if path.name == "step-0000024":
            raise KeyboardInterrupt  # mid-way through epoch 2

    monkeypatch.setattr(loop, "save_checkpoint", interrupt_after_step_24)
    monkeypatch.setattr(loop, "git_commit", lambda: "commit-of-the-cut-process")
    cut_start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        loop.main(args(tiny_distilbert, imdb_dir, tmp_path / "cut", tmp_path, *common))
    cut_s = time.perf_counter() - cut_start
    monkeypatch.setattr(loop, "save_checkpoint", original)
    monkeypatch.setattr(loop, "git_commit", git_commit)
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = loop.main(args(tiny_distilbert, imdb_dir, tmp_path / "cut", tmp_path, *common,
                             "--resume_from_checkpoint", "latest"))

    assert resumed["global_step"] == full["global_step"] == 32
    # the cut process's share of the wall time and memory, up to the checkpoint the resumed one started from
    earlier = resumed["earlier_segments"]
    assert earlier["to_step"] == 24 and 0 < earlier["wall_time_s"] <= cut_s + 0.1
    assert 0 < earlier["peak_rss_mib"] <= peak_memory()["peak_rss_mib"]
    # the code each segment ran: the cut process's, then this checkout's, as git itself names it
    assert earlier["git_commits"] == ["commit-of-the-cut-process"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    last = json.loads((tmp_path / "cut" / "checkpoints" / "step-0000032" / "state.json").read_text())
    assert last["git_commits"] == ["commit-of-the-cut-process", head.stdout.strip() if head.returncode == 0 else None]
    assert "earlier_segments" not in full
    # the first run tokenised the splits, the later ones read them from the cache it filled
    assert full["data"]["from_cache"] is False and resumed["data"]["from_cache"] is True
    # throughput counts what each process trained: 2 epochs x 256 reviews in one, steps 25-32 x 16 in the other
    assert full["train_samples_per_second"] * full["train_runtime"] == pytest.approx(512, rel=1e-3)
    assert resumed["train_samples_per_second"] * resumed["train_runtime"] == pytest.approx(8 * 16, rel=1e-3)
    assert resumed["test"]["loss"] == pytest.approx(full["test"]["loss"], abs=1e-5)
    assert resumed["test"]["accuracy"] == full["test"]["accuracy"]
    a = load_file(tmp_path / "full" / "checkpoints" / "step-0000032" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "step-0000032" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    steps = [r["step"] for r in read_jsonl(tmp_path / "cut" / "metrics.jsonl") if "train/loss" in r]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats steps after resuming"
    assert resumed["precision"] == precision
    assert resumed["skipped_steps"] == full["skipped_steps"]
    if (device, precision) == ("cpu", "fp16"):  # the resumed run kept the loss scale, so it skipped the same updates
        assert 0 < resumed["skipped_steps"] < 32
        scheduler = torch.load(tmp_path / "cut" / "checkpoints" / "step-0000032" / "custom_checkpoint_0.pkl",
                               weights_only=False)
        assert scheduler["last_epoch"] == 32 - resumed["skipped_steps"]  # the schedule waited at each skipped one


def test_save_total_limit_of_zero_or_none_keeps_every_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        (folder / f"step-{step:07d}").mkdir(parents=True)
        (folder / f"step-{step:07d}" / "state.json").write_text("{}")
    for keep in (0, -1, None):  # Hugging Face's meaning: no limit
        loop.prune_checkpoints(folder, keep)
        assert len(loop.step_checkpoints(folder)) == 3
    loop.prune_checkpoints(folder, 2)
    assert [p.name for p in loop.step_checkpoints(folder)] == ["step-0000004", "step-0000006"]


def test_length_grouped_batches_cover_every_example_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 512, size=1000)
    grouped = LengthGroupedBatches(lengths, batch_size=16, seed=1)
    for epoch in (0, 1):
        grouped.set_epoch(epoch)
        seen = [i for batch in grouped for i in batch]
        assert sorted(seen) == list(range(1000))
    epoch0, epoch1 = list(grouped.__class__(lengths, 16, 1)), list(grouped)
    assert epoch0 != epoch1  # a new order each epoch
    padded = lambda batches: sum(len(b) * max(lengths[b]) for b in batches)  # noqa: E731
    assert padded(list(grouped)) < 0.6 * padded(list(RandomBatches(lengths, 16, 1)))


def test_collator_pads_to_longest_or_fixed_width_and_drops_the_length_column(tiny_distilbert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_distilbert)
    pad = tokenizer.pad_token_id
    rows = [{"input_ids": [5, 6, 7], "labels": 1, "length": 3}, {"input_ids": [5], "labels": 0, "length": 1}]
    batch = padding_collator(tokenizer)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0] and "length" not in batch
    assert padding_collator(tokenizer, pad_to=8)(rows)["input_ids"].shape == (2, 8)
    columns = {"input_ids": [[5, 6, 7], [5]], "labels": [1, 0], "length": [3, 1]}  # as dataset[indices] gives it
    assert padding_collator(tokenizer)(columns)["input_ids"].tolist() == batch["input_ids"].tolist()


def test_predict_on_saved_model(trained_run, tmp_path, capsys):
    from distilbert.predict import main as predict
    from fixtures.synthetic import review

    out, _ = trained_run
    rng = np.random.default_rng(123)
    labels = [i % 2 for i in range(20)]
    reviews = [review(rng, y, 30) for y in labels]
    (tmp_path / "reviews.txt").write_text("\n".join(reviews[1:]) + "\n")
    results = predict(["--model", str(out / "best_model"), "--file", str(tmp_path / "reviews.txt"),
                       "--text", reviews[0]])
    assert len(results) == 20 and capsys.readouterr().out.count("\n") == 20
    predicted = [label for label, _ in results]
    expected = [("negative", "positive")[y] for y in labels]  # --text comes first
    assert sum(p == e for p, e in zip(predicted, expected)) >= 18
    assert all(0.5 <= p <= 1 for _, p in results)


@pytest.mark.parametrize("extra, match", [
    (["--model_name_or_path", "/no/such/model"], "model folder not found: /no/such/model"),
    (["--max_train_samples", "0"], "max_train_samples: expected a number >= 1, got 0"),
    (["--batching", "sorted"], "batching: expected one of"),
    (["--learning_rat", "1"], "unknown key"),
])
def test_bad_input(tiny_distilbert, imdb_dir, tmp_path, extra, match):
    with pytest.raises(UserError, match=match):
        loop.main(args(tiny_distilbert, imdb_dir, tmp_path / "run", tmp_path) + extra)


def test_model_without_classification_head(imdb_dir, tmp_path):
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(UserError, match="model type 'vit' has no sequence-classification head"):
        loop.main(args(tmp_path / "vit", imdb_dir, tmp_path / "run", tmp_path))


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tiny_distilbert, imdb_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(loop.TrainingError, match=r"loss is nan at step \d+; stopped. Last good checkpoint: .*step-"):
        loop.main(args(tiny_distilbert, imdb_dir, out, tmp_path, "--learning_rate", "1e10", "--warmup_steps", "0",
                       "--max_grad_norm", "1e10", "--save_steps", "1"))
    assert list((out / "checkpoints").glob("step-*[0-9]"))
    assert not (out / "results.json").exists()


@pytest.mark.real_data
def test_a_few_steps_on_real_reviews(tiny_distilbert, real_imdb_dir, tmp_path):
    results = loop.main(args(tiny_distilbert, real_imdb_dir, tmp_path / "run", tmp_path, "--max_train_samples", "64",
                             "--max_eval_samples", "32", "--max_test_samples", "32", "--max_steps", "4",
                             "--max_length", "256"))
    assert results["global_step"] == 4
    assert results["test"]["n"] == 32
    assert results["manifest"]["splits"]["train"]["size"] == 34704


def test_tokenised_splits_are_cached(tiny_distilbert, imdb_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    import distilbert.data as ddata
    from common.data import make_splits

    splits, _ = make_splits("random_70_10_20", 0, imdb_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_distilbert)
    first = ddata.tokenize_splits(splits, tokenizer, 64, tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 3

    def no_tokenising(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(ddata, "tokenize", no_tokenising)
    second = ddata.tokenize_splits(splits, tokenizer, 64, tmp_path / "cache")
    assert second["train"]["input_ids"] == first["train"]["input_ids"]
    assert max(second["train"]["length"]) <= 64
    with pytest.raises(AssertionError, match="tokenised again"):  # another max_length is another cache entry
        ddata.tokenize_splits(splits, tokenizer, 32, tmp_path / "cache")


def test_padding_record_counts_tokens_fed_per_review_under_each_batching():
    from distilbert.data import padding_record

    record = padding_record([1, 2, 3, 4], batch_size=2, seed=0, max_length=4)
    assert record["mean_tokens"] == 2.5 and record["share_truncated"] == 0.25
    padded = record["padded_tokens_per_review"]
    # one group, sorted by length: batches [4, 3] and [2, 1] are padded to 4 and 2 tokens: (2 x 4 + 2 x 2) / 4
    assert padded["length_grouped"] == 3.0 and padded["pad_to_max_length"] == 4.0
    assert padded["random"] in (3.0, 3.5)  # pairs {4,3}{2,1}: 3.0; {4,2}{3,1} and {4,1}{3,2}: (2 x 4 + 2 x 3) / 4


def test_predict_reads_a_parquet_column(trained_run, tmp_path):
    import pandas as pd

    from distilbert.predict import main as predict

    out, _ = trained_run
    pd.DataFrame({"review": ["a great superb film", "awful boring waste"]}).to_parquet(tmp_path / "r.parquet")
    assert len(predict(["--model", str(out / "best_model"), "--file", str(tmp_path / "r.parquet"),
                        "--column", "review"])) == 2
    with pytest.raises(UserError, match="no column 'text'"):
        predict(["--model", str(out / "best_model"), "--file", str(tmp_path / "r.parquet")])


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_other_encoder_checkpoints_work_the_same_way(family, imdb_dir, tmp_path):
    from transformers import (BertConfig, BertForSequenceClassification, RobertaConfig,
                              RobertaForSequenceClassification)

    from tests.tiny_models import corpus, wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer(corpus())
    small = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, pad_token_id=tokenizer.pad_token_id)
    if family == "bert":
        model = BertForSequenceClassification(BertConfig(max_position_embeddings=512, **small))
    else:  # RoBERTa offsets positions by the padding index, hence the extra room
        model = RobertaForSequenceClassification(RobertaConfig(max_position_embeddings=520, **small))
    folder = tmp_path / family
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    results = loop.main(args(folder, imdb_dir, tmp_path / "run", tmp_path, "--max_steps", "6",
                             "--max_train_samples", "96", "--max_test_samples", "32"))
    assert results["global_step"] == 6 and results["test"]["n"] == 32


def test_a_too_long_max_length_is_clamped_to_the_model(tiny_distilbert, imdb_dir, tmp_path, capsys):
    results = loop.main(args(tiny_distilbert, imdb_dir, tmp_path / "run", tmp_path, "--max_steps", "2",
                             "--max_length", "100000", "--cache_dir", "none"))
    assert results["global_step"] == 2
    assert "using its limit, 512 tokens" in capsys.readouterr().out
    assert "max_length: 512" in (tmp_path / "run" / "config.yaml").read_text()


def test_gradient_accumulation_of_two_batches_of_8_is_one_step_on_16(tiny_distilbert, imdb_dir, tmp_path, monkeypatch):
    """With random batches the two settings see the same 16 reviews in the first step (one permutation, cut in 8s or
    16s): with dropout off, the 2 x 8 accumulated gradient is the gradient on 16 (its norm before clipping, and the
    loss, logged at step 1), where a missing or doubled division by the accumulation would double or halve it."""
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)
    first = {}
    for name, batch, accumulation in (("one_16", "16", "1"), ("two_8", "8", "2")):
        loop.main(args(tiny_distilbert, imdb_dir, tmp_path / name, tmp_path, "--batching", "random", "--max_steps", "1",
                       "--per_device_train_batch_size", batch, "--gradient_accumulation_steps", accumulation,
                       "--logging_steps", "1", "--max_train_samples", "64", "--precision", "fp32"))
        first[name] = next(r for r in read_jsonl(tmp_path / name / "metrics.jsonl") if "train/grad_norm" in r)
    assert first["one_16"]["train/grad_norm"] > 0
    assert first["two_8"]["train/grad_norm"] == pytest.approx(first["one_16"]["train/grad_norm"], rel=1e-4)
    assert first["two_8"]["train/loss"] == pytest.approx(first["one_16"]["train/loss"], rel=1e-5)


def test_accumulation_steps_once_per_group_and_at_each_epochs_end(tiny_distilbert, imdb_dir, tmp_path):
    """100 reviews in batches of 16: 7 batches an epoch, the last of 4; accumulating 3, an epoch is 3 optimizer steps
    (batches 1-3, 4-6, 7), so 2 epochs are 6, and the schedule stepped 6 times."""
    results = loop.main(args(tiny_distilbert, imdb_dir, tmp_path / "run", tmp_path, "--num_train_epochs", "2",
                             "--max_train_samples", "100", "--gradient_accumulation_steps", "3"))
    assert results["global_step"] == 6
    last = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert last.name == "step-0000006"
    assert torch.load(last / "custom_checkpoint_0.pkl", weights_only=False)["last_epoch"] == 6
    assert json.loads((last / "state.json").read_text())["train_samples"] == 200
