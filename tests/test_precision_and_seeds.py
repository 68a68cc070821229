"""Precision chosen the same way by every script (GPU capability mocked), and runs that repeat exactly: the Trainer's
new classification head and the SFT script's LoRA weights are drawn after the seed is set."""
import pytest
import torch
from safetensors.torch import load_file

from common import precision as prec
from distilbert.model import EncoderArguments
from fixtures.synthetic import write_imdb
from tests.conftest import ROOT
from tests.cpu_kinds import fake_cpu, force_bitsandbytes_source


def fake_gpu(monkeypatch, native_bf16: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # emulated bf16 counts unless including_emulation=False, as in torch.cuda.is_bf16_supported
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16
                        or including_emulation)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_takes_bf16_only_where_the_gpu_computes_it(monkeypatch, native, expected):
    fake_gpu(monkeypatch, native)  # False: a V100 or T4, where bf16 is only emulated
    assert prec.resolve_precision("auto")[0] == expected
    assert prec.compute_dtype("auto") == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                         (False, True, "bf16"), (True, True, "bf16")])
def test_auto_precision_on_cpu_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, avx512_bf16, amx, expected):
    fake_cpu(monkeypatch, avx512_bf16, amx)
    assert prec.resolve_precision("auto")[0] == expected
    assert prec.compute_dtype("auto") == {"bf16": torch.bfloat16, "fp32": torch.float32}[expected]


def test_a_torch_without_the_cpu_checks_counts_as_no_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert prec.resolve_precision("auto")[0] == "fp32"


def test_explicit_settings_win_over_a_bf16_cpu(monkeypatch):
    fake_cpu(monkeypatch, avx512_bf16=True)
    assert prec.resolve_precision("fp32")[0] == "fp32" and prec.compute_dtype("fp32") == torch.float32
    assert prec.resolve_precision("fp16")[0] == "fp16"
    assert prec.resolve_precision("fp32")[1] == "set explicitly"


def test_the_choice_and_its_reason_are_printed_once(monkeypatch, capsys):
    fake_cpu(monkeypatch, avx512_bf16=True)
    monkeypatch.setattr(prec, "_announced", set())
    for _ in range(3):
        prec.compute_dtype("auto")
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["precision: auto -> bf16 (CPU with native bf16 (AVX512-BF16 or AMX))"]
    fake_cpu(monkeypatch, avx512_bf16=False)
    prec.resolve_precision("auto")  # a different answer is news
    assert capsys.readouterr().out.startswith("precision: auto -> fp32 (CPU without native bf16")


@pytest.mark.parametrize("setting, bf16", [("auto", True), ("fp32", False)])
def test_trainer_script_takes_bf16_on_a_bf16_cpu_unless_told_no(monkeypatch, tmp_path, setting, bf16):
    from transformers import TrainingArguments

    from distilbert import train_trainer

    fake_cpu(monkeypatch, avx512_bf16=True)
    args, reason = train_trainer.build_args(EncoderArguments(precision=setting),
                                            TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    assert (args.bf16, args.fp16) == (bf16, False)
    assert args.use_cpu == bf16  # TrainingArguments takes bf16 without a GPU only on use_cpu
    assert reason == ("CPU with native bf16 (AVX512-BF16 or AMX)" if bf16 else "set explicitly")


@pytest.mark.parametrize("dtype, bf16", [("auto", True), ("fp32", False)])
def test_sft_script_takes_bf16_on_a_bf16_cpu_unless_told_fp32(monkeypatch, tmp_path, dtype, bf16):
    from trl import SFTConfig

    from mistral.model import CausalLMArguments
    from mistral.train_sft import configure

    fake_cpu(monkeypatch, avx512_bf16=True)
    sft = configure(SFTConfig(output_dir=str(tmp_path), report_to="none", bf16=False),
                    CausalLMArguments(precision=dtype))
    assert (sft.bf16, sft.fp16, sft.use_cpu) == (bf16, False, bf16)


@pytest.mark.parametrize("native", [True, False], ids=["bf16_gpu", "fp16_gpu"])
def test_trainer_script_and_loop_pick_the_same_precision(monkeypatch, tmp_path, native):
    """On a GPU (mocked) with and without native bf16: the Trainer's bf16/fp16 flags, and the mixed precision the
    loop hands Accelerate (caught as the loop builds its Accelerator)."""
    from transformers import TrainingArguments

    from distilbert import train_loop, train_trainer

    class Built(Exception):
        pass

    def catch(**kwargs):
        raise Built(kwargs["mixed_precision"])
    fake_gpu(monkeypatch, native_bf16=native)
    monkeypatch.setattr(train_loop, "Accelerator", catch)
    with pytest.raises(Built) as loop_choice:
        train_loop.main(["--config", str(ROOT / "configs/distilbert_loop.yaml"), "--output_dir", str(tmp_path)])
    args, _ = train_trainer.build_args(EncoderArguments(),
                                       TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True))
    expected = "bf16" if native else "fp16"
    assert (args.bf16, args.fp16) == (native, not native)
    assert loop_choice.value.args == (expected,)


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


HUB_PROBE = """
import socket, sys
asked = []
def refuse(self, *args):
    asked.append(("connect", args))
    raise OSError("no network in this test")
socket.socket.connect = refuse
import kernels  # imported before bitsandbytes, as transformers does
fetch = kernels.get_kernel
def watched(*args, **kwargs):
    asked.append(("get_kernel", args))
    return fetch(*args, **kwargs)
kernels.get_kernel = watched
import mistral  # the project first, as every script imports it
import bitsandbytes
from bitsandbytes.backends.cpu import ops
print("asked", asked, "fused_kernel_registered", hasattr(ops, "gemm_4bit_forward_kernel"))
"""


@pytest.mark.parametrize("native_bf16", [True, False], ids=["avx512_bf16", "no_bf16"])
@pytest.mark.parametrize("offline", ["1", None], ids=["offline", "online"])
def test_no_hub_kernel_is_fetched_or_mentioned_on_either_kind_of_cpu(native_bf16, offline):
    """bitsandbytes' import on a CPU with AVX512-BF16 (forced, so every CI machine takes this branch) asks the
    `kernels` package for a Hub kernel; importing the project first keeps that from happening: no Hub access, no
    network, and not one line of output, online or offline."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "IMDB_HUB_KERNELS")}
    if offline:
        env["HF_HUB_OFFLINE"] = offline
    out = subprocess.run([sys.executable, "-c", force_bitsandbytes_source(native_bf16) + HUB_PROBE], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == f"asked [] fused_kernel_registered {native_bf16}\n"
    assert out.stderr == ""


def test_the_hub_kernel_is_asked_for_only_when_opted_in():
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "IMDB_HUB_KERNELS": "1"}
    out = subprocess.run([sys.executable, "-c", force_bitsandbytes_source(True) + HUB_PROBE], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert "('get_kernel', ('kernels-community/quantization-bitsandbytes',))" in out.stdout
    assert "Failed to load CPU gemm_4bit_forward" in out.stderr  # offline it cannot, and says so: asked for


def test_the_filtered_notice_is_the_one_bitsandbytes_logs():
    """The filter matches bitsandbytes' own text on its own logger: a reworded message would get through again."""
    import importlib.util
    from pathlib import Path

    import common

    source = Path(importlib.util.find_spec(common.BITSANDBYTES_CPU_LOGGER).origin).read_text()
    assert "logger = logging.getLogger(__name__)" in source
    assert f'"{common.KERNELS_NOTICE}: %s.' in source


def spy_on_classifier(monkeypatch, module) -> list:
    """The dtypes of the classification head's outputs in a run of `module`'s script."""
    dtypes, load = [], module.load_model_and_tokenizer

    def load_and_watch(*a, **k):
        model, tokenizer = load(*a, **k)
        model.classifier.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
        return model, tokenizer
    monkeypatch.setattr(module, "load_model_and_tokenizer", load_and_watch)
    return dtypes


@pytest.mark.parametrize("script", ["loop", "trainer"])
def test_distilbert_runs_on_a_bf16_cpu_compute_in_bf16_and_record_why(script, monkeypatch, tiny_distilbert,
                                                                        tmp_path):
    from distilbert import train_loop, train_trainer

    module = {"loop": train_loop, "trainer": train_trainer}[script]
    fake_cpu(monkeypatch, avx512_bf16=True)
    dtypes = spy_on_classifier(monkeypatch, module)
    extra = ["--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"] \
        if script == "trainer" else ["--eval_steps", "4", "--save_steps", "4"]
    results = module.main(["--config", str(ROOT / f"configs/distilbert_{script}.yaml"), "--model_name_or_path",
                           str(tiny_distilbert), "--data_dir", str(write_imdb(tmp_path / "imdb")), "--output_dir",
                           str(tmp_path / "run"), "--cache_dir", str(tmp_path / "cache"), "--report_to", "none",
                           "--max_steps", "4", "--max_train_samples", "32", "--max_eval_samples", "16",
                           "--max_test_samples", "16", "--max_length", "32", *extra])
    assert results["precision"] == "bf16"
    assert results["precision_reason"] == "CPU with native bf16 (AVX512-BF16 or AMX)"
    assert dtypes and set(dtypes) == {torch.bfloat16}  # training and evaluation both ran under bf16 autocast


def test_sft_on_a_bf16_cpu_trains_every_adapter_matrix_in_bf16(monkeypatch, tmp_path):
    """QLoRA with a bf16 compute dtype through bitsandbytes' CPU 4-bit path: the learning guard stops any run in
    which an adapter matrix gets no gradient, so a finished run proves that all of them trained."""
    from mistral import train_sft
    from mistral.learning_guard import LearningGuard
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    fake_cpu(monkeypatch, avx512_bf16=True)
    checked = []
    on_step = LearningGuard.on_pre_optimizer_step

    def watched(self, args, state, control, model=None, **kwargs):
        checked.append((args.bf16, sorted(self.silent or ())))
        return on_step(self, args, state, control, model=model, **kwargs)
    monkeypatch.setattr(LearningGuard, "on_pre_optimizer_step", watched)
    model = save_tiny_mistral(tmp_path / "model", chat_template=CHAT_TEMPLATE)
    results = train_sft.main(["--config", str(ROOT / "configs/mistral_sft.yaml"), "--model_name_or_path", str(model),
                              "--data_dir", str(write_imdb(tmp_path / "imdb")), "--output_dir", str(tmp_path / "run"),
                              "--report_to", "none", "--n_train", "16", "--n_eval", "8", "--n_test", "8",
                              "--max_length", "96", "--lora_r", "8", "--learning_rate", "5e-3",
                              "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
                              "--gradient_accumulation_steps", "1"])
    assert results["precision"] == "bf16" and results["quantization"] == "nf4-double-quant"
    assert results["precision_reason"] == "CPU with native bf16 (AVX512-BF16 or AMX)"
    assert len(checked) >= LearningGuard.STEPS and all(bf16 for bf16, _ in checked)
