"""One process per device, as `accelerate launch` starts them: 2-process CPU (gloo) runs of the Trainer scripts, and
the guard that keeps a launcher-less Trainer run off DataParallel."""
import json
import os
import subprocess
import sys

import pytest

from common.distributed import one_gpu_per_process
from tests.conftest import ROOT
from tests.test_distilbert_loop import args as loop_args
from tests.test_distilbert_trainer import args as trainer_args
from tests.test_mistral import EVAL_CONFIG, sft_args

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def launch(config: str, module: str, argv: list[str]) -> subprocess.CompletedProcess:
    """The shipped accelerate config (MULTI_GPU): on a machine without a GPU it starts torch.distributed processes,
    which the scripts join into a CPU (gloo) group (accelerate launch --cpu starts one process in Accelerate 1.x)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"configs/accelerate/{config}",
           "--num_processes", "2", "-m", module, *argv]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_several_visible_gpus_without_a_launcher_train_on_one(tmp_path, capsys):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16, report_to="none")
    args._n_gpu = 4  # what _setup_devices sets on a machine with 4 visible GPUs and no launcher
    assert args.train_batch_size == 64 and args.parallel_mode.value == "not_distributed"
    args = one_gpu_per_process(args, "distilbert.train_trainer")
    assert args.n_gpu == 1 and args.train_batch_size == 16 and args.parallel_mode.value == "not_parallel"
    assert "accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 4" in capsys.readouterr().out


@pytest.mark.slow
def test_sft_two_processes_share_the_work_and_rank_0_writes(tmp_path, imdb_dir):
    model = two_sided_mistral(tmp_path / "model")
    out = tmp_path / "run"
    done = launch("mistral_qlora_ddp.yaml", "mistral.train_sft", sft_args(model, imdb_dir, out, "--use_cpu", "true"))
    assert done.stdout.count("test accuracy: zero-shot") == 1  # one process reports
    results = json.loads((out / "results.json").read_text())
    # 24 reviews, batch 1 x accumulation 4, 2 epochs: 12 steps in one process, 6 when two share each batch
    assert results["global_step"] == 6
    assert results["zero_shot"]["n"] == results["tuned"]["n"] == 20
    assert results["best_step"] in (3, 6) and (out / "best_adapter" / "adapter_model.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("zero_shot/accuracy" in r for r in rows) == 1 and sum("eval/accuracy" in r for r in rows) == 2

    # each process scored half the test reviews: gathered, they give what one process gives on all of them
    from mistral import evaluate as ev
    from mistral.model import load_base
    from mistral.prompts import PromptArguments, make_format
    from common.data import make_splits

    splits, _ = make_splits("balanced", 42, str(imdb_dir), n_train=24, n_eval=10, n_test=20)
    base, tokenizer = load_base(str(model), load_in_4bit=True)  # as the run loads it (configs/mistral_sft.yaml)
    single = ev.evaluate_reviews(base, make_format(tokenizer, PromptArguments(), 96), splits["test"]["text"].tolist(),
                         splits["test"]["label"].tolist())
    assert results["zero_shot"]["confusion_matrix"] == single["confusion_matrix"]
    assert all(sum(column) > 0 for column in zip(*single["confusion_matrix"]))  # both labels predicted
    assert results["num_processes"] == 2


def two_sided_mistral(folder):
    """A tiny Mistral whose untuned answers take both labels (its window covers the prompt and its weights are large
    enough to move the answer's logits), so equal confusion matrices are a real check."""
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    return save_tiny_mistral(folder, chat_template=CHAT_TEMPLATE, sliding_window=256, initializer_range=0.3, seed=1)


@pytest.mark.slow
def test_evaluate_two_processes_split_the_reviews_and_rank_0_reports(tmp_path, imdb_dir):
    model, out = two_sided_mistral(tmp_path / "model"), tmp_path / "eval"
    argv = ["--config", EVAL_CONFIG, "--model_name_or_path", str(model), "--data_dir", str(imdb_dir), "--n_train",
            "24", "--n_eval", "10", "--n_test", "20", "--max_length", "96", "--batch_size", "1",
            "--output_dir", str(out), "--report_to", "none", "--load_in_4bit", "false"]
    done = launch("ddp.yaml", "mistral.evaluate", argv)
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone reports
    # batches of one review: each process's progress bar counts its half of the 20
    assert "/10 [" in done.stderr and "/20 [" not in done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2 and results["test"]["n"] == 20

    from common.data import make_splits
    from mistral import evaluate as ev
    from mistral.model import load_base
    from mistral.prompts import PromptArguments, make_format

    test = make_splits("balanced", 42, str(imdb_dir), n_train=24, n_eval=10, n_test=20)[0]["test"]
    base, tokenizer = load_base(str(model), load_in_4bit=False)
    single = ev.evaluate_reviews(base, make_format(tokenizer, PromptArguments(), 96), test["text"].tolist(),
                                 test["label"].tolist())
    assert results["test"]["confusion_matrix"] == single["confusion_matrix"]  # gathered: exactly one process's
    assert all(sum(column) > 0 for column in zip(*single["confusion_matrix"]))


@pytest.mark.slow
@pytest.mark.parametrize("module, make_args", [("distilbert.train_loop", loop_args),
                                               ("distilbert.train_trainer", trainer_args)])
def test_distilbert_two_processes_score_every_example_once(module, make_args, tiny_distilbert, imdb_dir, tmp_path):
    out = tmp_path / "run"
    launch("ddp.yaml", module, make_args(tiny_distilbert, imdb_dir, out, tmp_path, "--num_train_epochs", "1"))
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2
    assert results["test"]["n"] == results["manifest"]["splits"]["test"]["size"]
    assert results["validation"]["n"] == results["manifest"]["splits"]["validation"]["size"]
