"""Precision chosen the same way by every script (GPU capability mocked), and runs that repeat exactly: the Trainer's
new classification head and the SFT script's LoRA weights are drawn after the seed is set."""
import pytest
import torch
from safetensors.torch import load_file

from common import precision as prec
from distilbert.model import ModelArguments
from fixtures.synthetic import write_imdb
from tests.conftest import ROOT


def fake_gpu(monkeypatch, native_bf16: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # emulated bf16 counts unless including_emulation=False, as in torch.cuda.is_bf16_supported
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16
                        or including_emulation)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_takes_bf16_only_where_the_gpu_computes_it(monkeypatch, native, expected):
    fake_gpu(monkeypatch, native)  # False: a V100 or T4, where bf16 is only emulated
    assert prec.precision("auto") == expected
    assert prec.compute_dtype("auto") == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]


def test_cpu_and_explicit_settings(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prec.precision("auto") == "no" and prec.compute_dtype("auto") == torch.float32
    assert prec.precision("fp16") == "fp16" and prec.compute_dtype("fp32") == torch.float32


def test_trainer_script_and_loop_pick_the_same_precision(monkeypatch, tmp_path):
    from transformers import TrainingArguments

    from distilbert import train_loop, train_trainer

    assert train_loop.precision is train_trainer.precision is prec.precision  # one home
    fake_gpu(monkeypatch, native_bf16=False)
    args = train_trainer.build_args(ModelArguments(),
                                    TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True))
    assert args.fp16 and not args.bf16


@pytest.fixture(scope="module")
def headless_distilbert(tmp_path_factory):
    """A tiny DistilBERT encoder saved without its classification head, which a run must then draw at random."""
    from transformers import AutoTokenizer, DistilBertForSequenceClassification

    from tests.tiny_models import save_tiny_distilbert

    full = save_tiny_distilbert(tmp_path_factory.mktemp("full"))
    folder = tmp_path_factory.mktemp("headless")
    DistilBertForSequenceClassification.from_pretrained(full).distilbert.save_pretrained(folder)
    AutoTokenizer.from_pretrained(full).save_pretrained(folder)
    return folder


def test_two_trainer_runs_with_one_seed_end_with_the_same_weights(headless_distilbert, tmp_path):
    from distilbert import train_trainer

    data = write_imdb(tmp_path / "imdb")
    weights = []
    for run in ("a", "b"):
        train_trainer.main(["--config", str(ROOT / "configs/distilbert_trainer.yaml"), "--model_name_or_path",
                            str(headless_distilbert), "--data_dir", str(data), "--output_dir", str(tmp_path / run),
                            "--cache_dir", str(tmp_path / "cache"), "--report_to", "none", "--use_cpu", "true",
                            "--max_steps", "4", "--max_train_samples", "64", "--max_eval_samples", "16",
                            "--max_test_samples", "16", "--max_length", "64", "--seed", "7",
                            "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"])
        weights.append(load_file(tmp_path / run / "best_model" / "model.safetensors"))
    assert "classifier.weight" in weights[0]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_two_sft_runs_with_one_seed_end_with_the_same_adapter(tmp_path):
    from mistral import train_sft
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    model = save_tiny_mistral(tmp_path / "model", chat_template=CHAT_TEMPLATE)
    data = write_imdb(tmp_path / "imdb")
    adapters = []
    for run in ("a", "b"):
        train_sft.main(["--config", str(ROOT / "configs/mistral_sft.yaml"), "--model_name_or_path", str(model),
                        "--data_dir", str(data), "--output_dir", str(tmp_path / run), "--report_to", "none",
                        "--n_train", "16", "--n_eval", "8", "--n_test", "8", "--max_length", "96", "--lora_r", "8",
                        "--learning_rate", "5e-3", "--num_train_epochs", "1", "--seed", "7"])
        adapters.append(load_file(tmp_path / run / "best_adapter" / "adapter_model.safetensors"))
    assert adapters[0] and all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])


def test_bitsandbytes_kernels_notice_is_dropped_and_nothing_else(tmp_path):
    """bitsandbytes' notice about the missing `kernels` package is filtered on its own logger as soon as an
    experiment package is imported, before bitsandbytes; its other warnings still show."""
    import subprocess
    import sys

    script = (
        "import mistral, logging\n"
        "log = logging.getLogger('bitsandbytes.backends.cpu.ops')\n"
        "log.warning('Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
        "`pip install kernels` and the kernels >= 0.11.1', \"No module named 'kernels'\")\n"
        "log.warning('another bitsandbytes warning')\n"
        "import bitsandbytes\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "another bitsandbytes warning" in out.stderr
    assert "kernels" not in out.stderr


def test_the_filtered_notice_is_the_one_bitsandbytes_logs():
    """The filter matches bitsandbytes' own text on its own logger: a reworded message would get through again."""
    import importlib.util
    from pathlib import Path

    import common

    source = Path(importlib.util.find_spec(common.BITSANDBYTES_CPU_LOGGER).origin).read_text()
    assert "logger = logging.getLogger(__name__)" in source
    assert f'"{common.KERNELS_NOTICE}: %s.' in source
