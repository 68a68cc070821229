import json
import re

import pytest
import torch

from common.config import ConfigError, UserError
from mistral import evaluate as ev
from mistral import train_sft
from mistral.model import load_base
from mistral.prompts import PromptArguments, make_format, set_padding
from tests.conftest import ROOT
from tests.cpu_kinds import fake_cpu
from fixtures.synthetic import make_imdb

SFT_CONFIG = str(ROOT / "configs/mistral_sft.yaml")
EVAL_CONFIG = str(ROOT / "configs/mistral_eval.yaml")
PROMPT = PromptArguments()


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory):
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    return save_tiny_mistral(tmp_path_factory.mktemp("tiny_mistral"), chat_template=CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def plain_mistral(tmp_path_factory):
    """The same tiny model without a chat template: prompts end with the template's answer cue."""
    from tests.tiny_models import save_tiny_mistral

    return save_tiny_mistral(tmp_path_factory.mktemp("plain_mistral"))


def sft_args(model, data, out, *extra):
    return ["--config", SFT_CONFIG, "--model_name_or_path", str(model), "--data_dir", str(data),
            "--output_dir", str(out), "--report_to", "none", "--n_train", "24", "--n_eval", "10", "--n_test", "20",
            "--max_length", "96", "--lora_r", "8", "--learning_rate", "5e-3", "--logging_steps", "2",
            "--num_train_epochs", "2", *extra]


def formatted(model_dir, max_length=96, **kw):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_padding(tokenizer)
    return make_format(tokenizer, PromptArguments(**kw), max_length)


@pytest.mark.parametrize("which", ["tiny_mistral", "plain_mistral"])
def test_labels_masked_except_answer_and_eos(which, request, tmp_path):
    from trl import SFTConfig, SFTTrainer

    model_dir = request.getfixturevalue(which)
    fmt = formatted(model_dir)
    assert fmt.use_chat == (which == "tiny_mistral")
    model, tokenizer = load_base(str(model_dir), load_in_4bit=False)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    raw = make_imdb(n_train=8, n_test=0, n_dup=0)["train"]
    dataset = train_sft.to_dataset(fmt, raw)
    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path), max_length=96, bf16=False,
                                                     completion_only_loss=True, report_to="none"),
                         train_dataset=dataset, processing_class=tokenizer)
    for row, label in zip(trainer.train_dataset, raw["label"]):
        kept = [(i, t) for i, t in enumerate(row["labels"]) if t != -100]
        answer = fmt.completion_ids[label]
        assert answer[-1] == tokenizer.eos_token_id
        assert [t for _, t in kept] == answer  # only the answer and EOS carry loss
        assert kept[0][0] == len(row["input_ids"]) - len(answer)  # at the very end of the sequence


def test_long_review_keeps_its_answer(tiny_mistral):
    fmt = formatted(tiny_mistral, max_length=64)
    long_review = " ".join(["the film was great and moving"] * 200)
    example = fmt.example(long_review, 1)
    assert len(example["input_ids"]) <= 64
    assert example["input_ids"][-1] == fmt.tokenizer.eos_token_id
    assert example["input_ids"][-len(fmt.completion_ids[1]):] == fmt.completion_ids[1]
    assert fmt.tokenizer.decode(example["input_ids"]).count("[/INST]") == 1  # the prompt's end survived the cut


@pytest.mark.parametrize("kw, pattern", [
    ({"prompt_template": "Classify: {text}"}, r"prompt_template must contain the placeholder \{review\}"),
    ({"answer_words": ["good", "good"]},
     r"answer_words: expected two different words \(negative, positive\), got \['good', 'good'\]"),
    # the token's name is this tiny BPE's; on Mistral's tokenizer: test_real_models
    ({"answer_words": ["positive", "positively"]}, r"answer words \['positive', 'positively'\] start with the same "
                                                   r"token '.+' under this tokenizer; choose words whose first tokens "
                                                   r"differ"),
])
def test_bad_prompt_settings(tiny_mistral, kw, pattern):
    with pytest.raises(UserError) as error:
        formatted(tiny_mistral, **kw)
    assert re.fullmatch(pattern, str(error.value))


@pytest.fixture(scope="module")
def sft_run(tiny_mistral, tmp_path_factory):
    from fixtures.synthetic import write_imdb

    tmp = tmp_path_factory.mktemp("sft")
    results = train_sft.main(sft_args(tiny_mistral, write_imdb(tmp / "imdb"), tmp / "run"))
    return tmp, results


def test_sft_writes_zero_shot_and_tuned_results(sft_run):
    tmp, results = sft_run
    saved = json.loads((tmp / "run" / "results.json").read_text())
    keys = {"accuracy", "accuracy_negative", "accuracy_positive", "f1", "confusion_matrix", "n"}
    assert keys <= set(saved["zero_shot"]) and keys <= set(saved["tuned"])
    assert saved["zero_shot"]["n"] == saved["tuned"]["n"] == 20
    assert saved["manifest"]["protocol"] == "balanced"
    assert saved["best_epoch"] in (1.0, 2.0)
    rows = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r and "train/grad_norm" in r and "train/learning_rate" in r for r in rows)
    assert len([r for r in rows if "eval/accuracy" in r]) == 2
    assert any("eval/loss" in r for r in rows)
    assert (tmp / "run" / "best_adapter" / "adapter_model.safetensors").is_file()
    import pandas as pd

    for name in ("zero_shot", "tuned"):  # per-review predictions, for analysis.compare
        rows = pd.read_parquet(tmp / "run" / f"predictions_{name}.parquet")
        assert len(rows) == 20 and (rows["prediction"] == rows["label"]).mean() == saved[name]["accuracy"]


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"]])
def test_4bit_lora_trains_every_adapter_matrix_after_an_evaluation(tiny_mistral, tmp_path, targets):
    """As in a run: a no-grad evaluation of the 4-bit model first (zero-shot), then LoRA training. On a CPU with
    AVX512-BF16, bitsandbytes repacks 4-bit weights during such a pass into a layout with no backward: no gradient
    then reached q, k or v adapters, and with q and v only, none at all."""
    from trl import SFTConfig, SFTTrainer

    from mistral.model import add_lora

    fmt = formatted(tiny_mistral)
    model, tokenizer = load_base(str(tiny_mistral), load_in_4bit=True)
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    ev.score_labels(model, fmt, make_imdb(n_train=4, n_test=0, n_dup=0)["train"]["text"].tolist())
    assert not any(getattr(getattr(m, "weight", None), "quant_state", None) is not None
                   and getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in model.modules())
    model = add_lora(model, r=8, alpha=16, dropout=0.0, target_modules=targets, quantized=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == set(targets)  # ...self_attn.q_proj.lora_A.default.weight
    args = SFTConfig(output_dir=str(tmp_path), max_length=96, bf16=False, completion_only_loss=True, max_steps=4,
                     per_device_train_batch_size=2, learning_rate=1e-2, report_to="none", save_strategy="no",
                     optim="adamw_torch", gradient_checkpointing=True,
                     gradient_checkpointing_kwargs={"use_reentrant": False})
    dataset = train_sft.to_dataset(fmt, make_imdb(n_train=16, n_test=0, n_dup=0)["train"])
    SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer).train()
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed == trainable  # every adapter matrix trained, and the 4-bit base stayed as it was


def test_adapters_of_a_run_not_in_bf16_train_and_save_in_fp32(tiny_mistral, imdb_dir, tmp_path, monkeypatch):
    """TRL's SFTTrainer casts a 4-bit model's adapters to bf16; an fp32 run keeps them in fp32 (on a CPU without
    native bf16 every adapter matmul in bf16 is emulated, several times slower). On a CPU that reports native bf16
    (forced), so that fp32 is what was asked for, not what `auto` chose."""
    from safetensors.torch import load_file

    fake_cpu(monkeypatch, avx512_bf16=True)

    train_sft.main(sft_args(tiny_mistral, imdb_dir, tmp_path / "run", "--num_train_epochs", "1", "--precision", "fp32"))
    saved = load_file(tmp_path / "run" / "best_adapter" / "adapter_model.safetensors")
    assert saved and {t.dtype for t in saved.values()} == {torch.float32}


def test_run_that_cannot_learn_stops_without_results(tiny_mistral, imdb_dir, tmp_path, monkeypatch):
    """Optimizer steps that change nothing (as a learning rate of 0 would, which the settings refuse): lora_B stays
    0, so lora_A never gets a gradient, and the run stops before any results."""
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, closure=None: None)
    out = tmp_path / "run"
    with pytest.raises(UserError, match="training is not learning: in the first 3 optimizer steps 4 of 8 trainable"):
        train_sft.main(sft_args(tiny_mistral, imdb_dir, out, "--num_train_epochs", "1"))
    assert not (out / "results.json").exists()


# fp32 on every CPU: where the CPU has native bf16, `auto` would train in bf16, and this tiny model's margins (well
# under one logit) then learn less in 4 epochs (72.5% against 87.5% in fp32, measured with torch's bf16 check forced
# on). Training in bf16 is tested in test_precision_and_seeds.py.
LEARN = ["--n_train", "64", "--n_test", "40", "--num_train_epochs", "4", "--per_device_train_batch_size", "4",
         "--gradient_accumulation_steps", "1", "--learning_rate", "2e-2", "--lora_dropout", "0", "--load_in_4bit",
         "false", "--precision", "fp32",
         "--lora_target_modules", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"]


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory):
    """A tiny Mistral that can learn the task: its window covers the whole prompt (the default 16 tokens do not reach
    the review from the answer position), and weights large enough for adapters to move its logits. LoRA on every
    linear layer, 64 synthetic reviews (separable by their sentiment words), 4 epochs: about a minute."""
    from fixtures.synthetic import write_imdb
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    tmp = tmp_path_factory.mktemp("learned")
    model = save_tiny_mistral(tmp / "model", chat_template=CHAT_TEMPLATE, sliding_window=256, initializer_range=0.1)
    with pytest.MonkeyPatch.context() as patch:  # a CPU with native bf16 (forced): fp32 must come from the settings
        fake_cpu(patch, avx512_bf16=True)
        results = train_sft.main(sft_args(model, write_imdb(tmp / "imdb"), tmp / "run", *LEARN))
    return tmp, model, results


@pytest.mark.slow
def test_tiny_mistral_learns_a_separable_task(learned_run):
    _, _, results = learned_run
    zero_shot, tuned = results["zero_shot"], results["tuned"]
    assert tuned["accuracy"] >= 0.8 and tuned["accuracy"] >= zero_shot["accuracy"] + 0.25
    assert min(tuned["accuracy_negative"], tuned["accuracy_positive"]) >= 0.6  # not one label for everything


@pytest.mark.slow
def test_adapter_reloads_and_scores_identically(learned_run):
    tmp, model, results = learned_run
    out = ev.main(["--config", EVAL_CONFIG, "--model_name_or_path", str(model), "--data_dir", str(tmp / "imdb"),
                   "--adapter", str(tmp / "run" / "best_adapter"), "--n_train", "64", "--n_eval", "10",
                   "--n_test", "40", "--max_length", "96", "--output_dir", str(tmp / "eval"), "--report_to", "none",
                   "--load_in_4bit", "false", "--precision", "fp32"])
    assert out["test"]["confusion_matrix"] == results["tuned"]["confusion_matrix"]
    assert out["test"]["confusion_matrix"] != results["zero_shot"]["confusion_matrix"]  # the adapter is in use


@pytest.mark.slow
def test_merged_logits_equal_base_plus_adapter(learned_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from mistral.model import CausalLMArguments, load_adapter

    tmp, model, _ = learned_run
    adapter = tmp / "run" / "best_adapter"
    train_sft.merge(CausalLMArguments(model_name_or_path=str(model), load_in_4bit=False, precision="fp32"), adapter,
                    tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    base, _ = load_base(str(model), load_in_4bit=False, precision="fp32")
    with_adapter = load_adapter(base, str(adapter))
    ids = torch.randint(3, merged.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = with_adapter(input_ids=ids).logits, merged(input_ids=ids).logits
        bare = with_adapter.get_base_model()
        with with_adapter.disable_adapter():
            without = bare(input_ids=ids).logits
    assert (expected - without).abs().max() > 1e-2  # the adapter changes the outputs: the comparison means something
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("SEED", [0, 1, 2])
def test_label_scoring_agrees_with_greedy_generation(tmp_path, SEED):
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    # a window wider than the prompts, so that the answer position sees the review, not only the template's end
    folder = save_tiny_mistral(tmp_path / "wide_window", sliding_window=256, chat_template=CHAT_TEMPLATE)
    fmt = formatted(folder)
    model, _ = load_base(str(folder), load_in_4bit=False, precision="fp32")  # the check below needs fp32 (an SVD)
    reviews = make_imdb(n_train=30, n_test=0, n_dup=0, seed=SEED)["train"]["text"].tolist()
    # Make the two answer tokens the likely next tokens, and which one wins depend on the review: their output
    # rows become +v and -v, with v the direction along which the answer-position states vary most.
    neg, pos = (ids[0] for ids in fmt.label_token_ids)
    with torch.no_grad():
        states = torch.stack([model(torch.tensor([fmt.prompt_ids(r)]), output_hidden_states=True)
                              .hidden_states[-1][0, -1] for r in reviews])
        centred = states - states.mean(0)
        v = torch.linalg.svd(centred, full_matrices=False).Vh[0]
        v = v - (v @ states.mean(0)) / states.mean(0).norm() ** 2 * states.mean(0)  # no common offset
        v = v / (centred @ v).std() * 50
        model.lm_head.weight[pos], model.lm_head.weight[neg] = v, -v
    scored = ev.score_labels(model, fmt, reviews, batch_size=7)  # uneven batches: left padding exercised
    agreed = 0
    for review, label in zip(reviews, scored):
        ids = torch.tensor([fmt.prompt_ids(review)])
        first = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                               do_sample=False, pad_token_id=fmt.tokenizer.pad_token_id)[0, -1].item()
        if first in (neg, pos):  # greedy generation starts a label word: scoring must pick the same one
            assert label == int(first == pos)
            agreed += 1
    assert agreed >= 20
    assert len(set(scored)) == 2  # both labels occur: the comparison is not vacuous


def test_generate_mode_reports_unparsed():
    assert ev.parse_answer(" Positive.", ["negative", "positive"]) == 1
    assert ev.parse_answer("negative, not positive", ["negative", "positive"]) == 0
    assert ev.parse_answer("I think so", ["negative", "positive"]) is None


def test_generate_metrics_count_an_unparsed_answer_as_wrong():
    # 4 reviews: one right, one wrong, two unparsed -> 1 of 4 right over all reviews; 1 of 2 among the parsed
    m = ev.generate_metrics([0, 1, 0, 1], [0, 0, None, None])
    assert m["accuracy"] == 0.25 and m["n"] == 4 and m["unparsed"] == 2
    assert m["confusion_matrix"] == [[1, 1], [2, 0]]  # the unparsed negative counted as positive, and vice versa
    assert m["accuracy_negative"] == 0.5 and m["accuracy_positive"] == 0.0
    assert m["parsed"]["accuracy"] == 0.5 and m["parsed"]["n"] == 2
    nothing = ev.generate_metrics([0, 1, 1], [None, None, None])
    assert nothing["accuracy"] == 0.0 and nothing["unparsed"] == 3 and nothing["parsed"] is None
    assert nothing["accuracy_ci95"][0] == 0.0 and 0 < nothing["accuracy_ci95"][1] < 0.6


def test_evaluate_generate_mode_accuracy_covers_every_review(tiny_mistral, imdb_dir, tmp_path, capsys):
    out = ev.main(["--config", EVAL_CONFIG, "--model_name_or_path", str(tiny_mistral), "--data_dir", str(imdb_dir),
                   "--mode", "generate", "--n_train", "24", "--n_eval", "10", "--n_test", "6", "--max_length", "96",
                   "--max_new_tokens", "2",
                   "--output_dir", str(tmp_path / "gen"), "--report_to", "none", "--load_in_4bit", "false"])
    metrics = out["test"]
    # the same generation, redone here: the run's counts must be exactly what its answers give
    from common.data import make_splits

    test = make_splits("balanced", 42, str(imdb_dir), n_train=24, n_eval=10, n_test=6)[0]["test"]
    model, tokenizer = load_base(str(tiny_mistral), load_in_4bit=False)
    preds, texts = ev.generate_labels(model, make_format(tokenizer, PROMPT, 96), test["text"].tolist(),
                                      PROMPT.answer_words, max_new_tokens=2)
    right = sum(p == y for p, y in zip(preds, test["label"]))
    assert len(texts) == metrics["n"] == 6
    assert metrics["unparsed"] == sum(p is None for p in preds)
    assert metrics["accuracy"] == right / 6  # over every review, an unparsed answer wrong
    printed = capsys.readouterr().out
    assert f"test accuracy {right / 6:.4f} on 6 reviews (generate, {metrics['unparsed']} unparsed" in printed

    # the run folder describes the run: what was scored, with what, on which reviews
    saved = json.loads((tmp_path / "gen" / "results.json").read_text())
    assert saved["script"] == "mistral.evaluate" and saved["model"] == str(tiny_mistral) and saved["adapter"] is None
    assert saved["split"] == "test" and saved["num_processes"] == 1
    assert saved["model_parameters"] == sum(p.numel() for p in model.parameters())
    expected = make_splits("balanced", 42, str(imdb_dir), n_train=24, n_eval=10, n_test=6)[1]
    assert saved["manifest"]["splits"]["test"]["sha256"] == expected["splits"]["test"]["sha256"]
    rows = [json.loads(line) for line in (tmp_path / "gen" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 0 and rows[0]["test/accuracy"] == right / 6

    # every reader of a run takes that accuracy, also when no answer parsed (as with this tiny model)
    from analysis import compare, plots, report

    run = tmp_path / "gen"
    assert report.rows_of(run, out)[0][5].startswith(f"{100 * right / 6:.2f}%")
    assert compare.main(["--runs", f"{run},{run}"])["accuracy_a"] == right / 6
    plots.main(["--run", str(run)])
    assert (run / "plots" / "confusion_matrix.png").is_file()
    import shutil

    from analysis import seeds

    for k in (1, 2):
        shutil.copytree(run, tmp_path / "sweep" / f"seed_{k}")
    figures = seeds.summarize(tmp_path / "sweep")["evaluations"]
    assert [f["accuracy"]["values"] for f in figures.values()] == [[right / 6, right / 6]]


def test_evaluate_scores_the_split_it_is_given(tiny_mistral, imdb_dir, tmp_path, capsys):
    import pandas as pd

    from common.data import make_splits, summary_line
    from common.predictions import text_sha256

    out = ev.main(["--config", EVAL_CONFIG, "--model_name_or_path", str(tiny_mistral), "--data_dir", str(imdb_dir),
                   "--split", "validation", "--n_train", "24", "--n_eval", "10", "--n_test", "6",
                   "--max_length", "96", "--batch_size", "1", "--precision", "fp32",
                   "--output_dir", str(tmp_path / "val"), "--report_to", "none"])
    # a scoring batch of one review is a valid setting, and the precision set is the one recorded
    assert out["precision"] == "fp32" and out["precision_reason"] == "set explicitly"
    splits, manifest = make_splits("balanced", 42, str(imdb_dir), n_train=24, n_eval=10, n_test=6)
    validation = splits["validation"]
    scored = pd.read_parquet(tmp_path / "val" / "predictions.parquet")
    assert scored["text_sha256"].tolist() == [text_sha256(t) for t in validation["text"]]
    assert scored["label"].tolist() == validation["label"].tolist()
    metrics = out["validation"]
    assert out["split"] == "validation" and "test" not in out and metrics["n"] == 10
    assert metrics["accuracy"] == (scored["prediction"] == scored["label"]).mean()
    printed = capsys.readouterr().out
    assert re.search(rf"validation accuracy {metrics['accuracy']:.4f} on 10 reviews \(score, [\d.]+ reviews/s\)",
                     printed)
    assert summary_line("validation", manifest["splits"]["validation"]) in printed
    # loaded in 4-bit, as configs/mistral_eval.yaml says: NF4 packs two weights in a byte, so fewer parameters
    plain = load_base(str(tiny_mistral), load_in_4bit=False)[0]
    assert out["model_parameters"] < sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("extra, match", [
    (["--model_name_or_path", "/no/such/model"], "model folder not found"),
    (["--adapter", "/no/such/adapter"], "adapter folder not found"),
    (["--answer_words", "good,good"], "two different words"),
    (["--prompt_template", "no placeholder"], "must contain the placeholder"),
    (["--batch_sise", "8"], "unknown key"),
    (["--mode", "sample"], r"^mode: expected one of score, generate, got 'sample'$"),
    (["--split", "dev"], r"^split: expected one of train, validation, test, got 'dev'$"),
])
def test_evaluate_bad_input(tiny_mistral, imdb_dir, tmp_path, monkeypatch, extra, match):
    def no_model(*a, **k):
        raise AssertionError("model loaded before the settings were checked")

    monkeypatch.setattr(ev, "load_base", no_model)
    base = ["--config", EVAL_CONFIG, "--model_name_or_path", str(tiny_mistral), "--data_dir", str(imdb_dir),
            "--n_train", "24", "--n_eval", "10", "--n_test", "6", "--output_dir", str(tmp_path / "e"),
            "--report_to", "none"]
    with pytest.raises((UserError, ConfigError), match=match):
        ev.main(base + extra)


def test_adapter_for_another_base_is_rejected(sft_run, tmp_path, imdb_dir):
    from tests.tiny_models import save_tiny_mistral

    other = save_tiny_mistral(tmp_path / "wide", hidden_size=128)
    tmp, _ = sft_run
    with pytest.raises(UserError, match="does not match the base model"):
        ev.main(["--config", EVAL_CONFIG, "--model_name_or_path", str(other), "--data_dir", str(imdb_dir),
                 "--adapter", str(tmp / "run" / "best_adapter"), "--n_train", "24", "--n_eval", "10",
                 "--n_test", "6", "--output_dir",
                 str(tmp_path / "e"), "--report_to", "none"])


def test_sft_bad_input_fails_before_loading_the_model(tiny_mistral, imdb_dir, tmp_path, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("model loaded before the settings were checked")

    monkeypatch.setattr(train_sft, "load_base", no_model)
    with pytest.raises(UserError, match="placeholder"):
        train_sft.main(sft_args(tiny_mistral, imdb_dir, tmp_path / "r", "--prompt_template", "Classify this."))
    with pytest.raises(ConfigError, match="unknown key"):
        train_sft.main(sft_args(tiny_mistral, imdb_dir, tmp_path / "r", "--lora_rank", "8"))


def test_merge_writes_a_loadable_model(tiny_mistral, imdb_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    train_sft.main(sft_args(tiny_mistral, imdb_dir, tmp_path / "run", "--num_train_epochs", "1", "--merge", "true"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "merged")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert (tmp_path / "run" / "merged" / "merged_from.json").is_file()


def test_sft_resume_keeps_zero_shot_best_epoch_and_metrics(tiny_mistral, imdb_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = train_sft.main(sft_args(tiny_mistral, imdb_dir, out, "--num_train_epochs", "1", "--save_total_limit", "2"))
    best_before = json.loads((out / "best_adapter" / "best.json").read_text())
    calls = []
    original = train_sft.evaluate_reviews

    def counting(*a, **k):
        calls.append(k.get("desc"))
        return original(*a, **k)

    monkeypatch.setattr(train_sft, "evaluate_reviews", counting)
    resumed = train_sft.main(sft_args(tiny_mistral, imdb_dir, out, "--num_train_epochs", "2",
                                      "--save_total_limit", "2", "--resume_from_checkpoint", "latest"))
    assert "zero-shot" not in calls  # reused from zero_shot.json
    assert resumed["zero_shot"] == first["zero_shot"]
    assert resumed["global_step"] == 2 * first["global_step"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval/accuracy"] for r in rows if "eval/accuracy" in r]
    assert len(evals) == 2 and evals[0] == best_before["accuracy"]  # epoch 1 kept, epoch 2 added
    # the best is chosen over both epochs, the one before the interruption included (first of equals kept)
    assert resumed["validation"]["accuracy"] == max(evals)
    assert resumed["best_epoch"] == (1.0 if evals[0] >= evals[1] else 2.0)


def test_merge_comes_after_results_and_after_the_training_model_is_freed(tiny_mistral, imdb_dir, tmp_path,
                                                                          monkeypatch):
    import gc
    import weakref

    out, trained, seen = tmp_path / "run", [], {}
    real_add_lora = train_sft.add_lora

    def add_lora_and_watch(*args, **kwargs):
        model = real_add_lora(*args, **kwargs)
        trained.append(weakref.ref(model))
        return model

    def fake_merge(model_args, adapter, folder, trust_remote_code=False):
        gc.collect()
        seen["results"] = (out / "results.json").is_file()
        seen["training_model_alive"] = trained[0]() is not None

    monkeypatch.setattr(train_sft, "add_lora", add_lora_and_watch)
    monkeypatch.setattr(train_sft, "merge", fake_merge)
    train_sft.main(sft_args(tiny_mistral, imdb_dir, out, "--num_train_epochs", "1", "--merge", "true"))
    assert seen == {"results": True, "training_model_alive": False}


@pytest.mark.parametrize("loader", ["mistral", "distilbert"])
def test_gated_model_error_says_where_to_accept_and_how_to_log_in(monkeypatch, loader):
    import transformers

    def gated(*args, **kwargs):
        raise OSError("You are trying to access a gated repo.\nMake sure to have access to it at "
                      "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.2.\n401 Client Error.")

    for name in ("AutoTokenizer", "AutoConfig"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", gated)
    if loader == "mistral":
        from mistral.model import load_tokenizer as load
    else:
        from distilbert.model import load_model_and_tokenizer as load
    with pytest.raises(UserError) as error:
        load("mistralai/Mistral-7B-Instruct-v0.2")
    assert str(error.value) == (
        "mistralai/Mistral-7B-Instruct-v0.2 is a gated model: accept its terms at "
        "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.2, then log in here with the same account "
        "(hf auth login, or set HF_TOKEN)")


def test_sft_runs_on_cpu_without_a_config_file(tiny_mistral, imdb_dir, tmp_path):
    results = train_sft.main(["--model_name_or_path", str(tiny_mistral), "--data_dir", str(imdb_dir),
                              "--output_dir", str(tmp_path / "run"), "--report_to", "none", "--n_train", "8",
                              "--n_eval", "4", "--n_test", "4", "--max_length", "96", "--lora_r", "4",
                              "--num_train_epochs", "1", "--per_device_train_batch_size", "4"])
    assert results["tuned"]["n"] == 4 and results["best_epoch"] == 1


def test_margins_become_labels_and_a_tie_is_negative(monkeypatch, tmp_path):
    """Label scoring's last step, on margins given by hand: positive only where the positive answer outscores the
    negative one; the metrics and the predictions file of an evaluation follow from those labels."""
    import pandas as pd

    margins = [2.0, 0.0, -1.5, 0.5, -0.25]
    monkeypatch.setattr(ev, "score_margins", lambda model, fmt, reviews, batch_size=8, desc="": margins)
    assert ev.score_labels(None, None, ["a review"] * 5) == [1, 0, 0, 1, 0]
    import time

    start = time.perf_counter()
    metrics = ev.evaluate_reviews(None, None, [f"review {i}" for i in range(5)], [1, 0, 0, 1, 1],
                                  predictions_path=tmp_path / "p.parquet")
    elapsed = time.perf_counter() - start
    assert metrics["accuracy"] == 0.8 and metrics["confusion_matrix"] == [[2, 0], [1, 2]]
    assert metrics["unparsed"] == 0 and metrics["mode"] == "score" and "parsed" not in metrics  # nothing to parse
    assert metrics["examples_per_second"] >= 5 / elapsed  # timed inside the call: at least the rate seen outside
    saved = pd.read_parquet(tmp_path / "p.parquet")
    assert saved["prediction"].tolist() == [1, 0, 0, 1, 0] and saved["score"].tolist() == margins


def test_generate_mode_passes_its_settings_and_writes_no_scores(monkeypatch, tmp_path):
    import pandas as pd

    seen = {}

    def fake_generate(model, fmt, reviews, answer_words, max_new_tokens=5):
        seen.update(answer_words=answer_words, max_new_tokens=max_new_tokens)
        return [1, None, 0], ["positive", "hmm", "negative"]

    monkeypatch.setattr(ev, "generate_labels", fake_generate)
    metrics = ev.evaluate_reviews(None, None, ["a", "b", "c"], [1, 1, 1], mode="generate", answer_words=["bad", "good"],
                                  max_new_tokens=3, predictions_path=tmp_path / "g.parquet")
    assert seen == {"answer_words": ["bad", "good"], "max_new_tokens": 3}
    assert metrics["mode"] == "generate" and metrics["unparsed"] == 1 and metrics["accuracy"] == pytest.approx(1 / 3)
    assert pd.read_parquet(tmp_path / "g.parquet")["score"].isna().all()


def test_left_padding_by_hand():
    """Two prompts of 3 and 1 tokens: pads on the left, masked, and positions that count real tokens only."""
    batch = ev.left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]


class FakeTokenizer:
    """Just what set_padding reads and writes: named special tokens with fixed ids."""
    IDS = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}

    def __init__(self, pad, unk):
        self.pad_token, self.unk_token, self.eos_token, self.added = pad, unk, "</s>", []

    pad_token_id = property(lambda self: self.IDS.get(self.pad_token))
    unk_token_id = property(lambda self: self.IDS.get(self.unk_token))
    eos_token_id = property(lambda self: self.IDS[self.eos_token])

    def add_special_tokens(self, tokens):
        self.added.append(tokens)
        self.pad_token = tokens["pad_token"]


@pytest.mark.parametrize("pad, unk, expected_pad, added", [
    (None, "<unk>", "<unk>", []),                          # Mistral: no pad token, <unk> serves
    ("</s>", None, "<pad>", [{"pad_token": "<pad>"}]),     # pad == EOS and no <unk>: a new <pad>
    ("</s>", "</s>", "<pad>", [{"pad_token": "<pad>"}]),   # <unk> is EOS too: it cannot serve
    ("<pad>", "<unk>", "<pad>", []),                       # a distinct pad token is kept
])
def test_padding_token_is_distinct_from_eos(pad, unk, expected_pad, added):
    tokenizer = FakeTokenizer(pad, unk)
    set_padding(tokenizer)
    assert tokenizer.pad_token == expected_pad and tokenizer.added == added


def test_answer_ends_at_the_first_eos_and_nothing_follows_a_bare_prompt(tiny_mistral):
    """A template that puts a newline after EOS (as ChatML does): the answer stops at EOS, which appears once; and
    `after_prompt` finds nothing after a prompt alone, or after a text that is not the prompt."""
    from mistral.model import load_tokenizer
    from mistral.prompts import SAMPLE_REVIEW
    from tests.tiny_models import CHAT_TEMPLATE

    tokenizer = load_tokenizer(str(tiny_mistral))
    tokenizer.chat_template = CHAT_TEMPLATE.replace("{{ eos_token }}{% endif %}", "{{ eos_token }}\n{% endif %}")
    fmt = make_format(tokenizer, PROMPT, 96)
    ids = fmt.completion("positive")
    assert ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids[:-1]).strip() == "positive"
    assert fmt.after_prompt(fmt.render(SAMPLE_REVIEW)) is None
    assert fmt.after_prompt("an unrelated text " * 20) is None
    assert fmt.after_prompt(fmt.render(SAMPLE_REVIEW) + " positive")


def test_a_review_is_cut_to_whatever_room_is_left_and_no_room_is_an_error(tiny_mistral):
    """The budget of the prompt (max_length less the answer and EOS) with room for exactly one review token keeps
    one; with less room than the template itself takes, the one-line error."""
    from mistral.model import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_mistral))
    probe = make_format(tokenizer, PROMPT, 512)
    answer = max(len(c) for c in probe.completion_ids)
    bare = len(probe.encode_prompt(""))
    review = "a wonderful film " * 40
    one = make_format(tokenizer, PROMPT, bare + answer + 1).prompt_ids(review)
    assert len(one) == bare + 1
    with pytest.raises(UserError, match=rf"^max_length {bare + answer - 2} leaves no room for the review in the "
                                        r"prompt template$"):
        make_format(tokenizer, PROMPT, bare + answer - 2).prompt_ids(review)


@pytest.mark.slow
def test_variant_mass_whole_words_score_as_label_scoring_does(learned_run, tmp_path):
    """mistral.variant_mass, end to end: its whole-word set is what label scoring sums, so its accuracy is
    mistral.evaluate's on the same reviews; every candidate's share of the candidates' mass adds up to one. On the
    learned tiny model (tuned accuracy 0.8 or more), so that swapped labels would score the complement, not 0.5."""
    from mistral import variant_mass

    tmp, model, results = learned_run
    common = ["--model_name_or_path", str(model), "--adapter", str(tmp / "run" / "best_adapter"), "--data_dir",
              str(tmp / "imdb"), "--n_train", "64", "--n_eval", "10", "--n_test", "40", "--max_length", "96",
              "--load_in_4bit", "false", "--precision", "fp32"]
    scored = ev.main(["--config", EVAL_CONFIG, *common, "--output_dir", str(tmp_path / "eval"), "--report_to", "none"])
    found = variant_mass.main([*common, "--output_dir", str(tmp_path / "mass")])
    assert scored["test"]["accuracy"] == results["tuned"]["accuracy"] >= 0.8
    assert found["scoring"]["whole_words"]["accuracy"] == scored["test"]["accuracy"]
    assert found["scoring"]["whole_words"]["n"] == 40
    assert sum(m["share_of_candidate_mass"] for m in found["mass"]) == pytest.approx(1.0)
    assert set(found["scoring"]["trained_token"]["tokens"]) <= set(found["scoring"]["whole_words"]["tokens"])
    assert json.loads((tmp_path / "mass" / "results.json").read_text())["scoring"] == found["scoring"]
