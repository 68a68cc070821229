"""Loading a causal LM for the Mistral experiment: 4-bit NF4 (bitsandbytes) or not, LoRA adapters (peft).

The quantisation and LoRA configurations are TRL's own (get_quantization_config, get_peft_config on a
trl.ModelConfig made from our settings). Two pieces stay ours, each saying why: the settings class (one precision
setting for both experiments) and applying the adapter (the QLoRA preparation TRL's SFTTrainer leaves out).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState

from common.config import UserError, first_line, setting
from common.io import check_model_path, model_load_error
from common.precision import PrecisionArguments, compute_dtype
from mistral.prompts import set_padding


@dataclass
class CausalLMArguments(PrecisionArguments):
    """The QLoRA scripts' model settings. Not trl.ModelConfig as the settings class: its dtype `auto` means the
    checkpoint's dtype, where `precision: auto` (both experiments' setting) means what the hardware computes
    natively; trl_config() makes the ModelConfig that TRL's helpers read."""
    model_name_or_path: str = setting("mistralai/Mistral-7B-Instruct-v0.2", "Hub id or local folder of the causal LM")
    load_in_4bit: bool = setting(True, "NF4 with double quantisation (QLoRA); false: plain LoRA in `precision`")
    lora_r: int = setting(64, "LoRA rank", at_least=1)
    lora_alpha: int = setting(16, "LoRA scaling numerator (the update is scaled by alpha / r)", above=0)
    lora_dropout: float = setting(0.1, "dropout on the LoRA input", at_least=0, below=1)
    lora_target_modules: list[str] = setting(["q_proj", "v_proj"], "modules that get adapters: the original run's; "
                                             "q_proj,k_proj,v_proj,o_proj is the four-projection variant")

def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer, with a padding token distinct from EOS. Cheap: load it first to check settings against it."""
    from transformers import AutoTokenizer

    check_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise model_load_error(name, "a tokenizer", e) from None
    set_padding(tokenizer)
    return tokenizer


def trl_config(**fields):
    """TRL's ModelConfig for its helpers: the QLoRA recipe's NF4 with double quantisation, LoRA for a causal LM."""
    from trl import ModelConfig

    return ModelConfig(bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True, lora_task_type="CAUSAL_LM", **fields)


def load_base(name: str, load_in_4bit: bool = True, precision: str = "auto", trust_remote_code: bool = False,
              tokenizer=None):
    """The base model (4-bit NF4 with double quantisation computing in `precision`, or in `precision`) and its
    tokenizer."""
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    tokenizer = tokenizer or load_tokenizer(name, trust_remote_code)
    torch_dtype = compute_dtype(precision)
    quantization = get_quantization_config(trl_config(model_name_or_path=name, load_in_4bit=load_in_4bit,
                                                      dtype=str(torch_dtype).removeprefix("torch.")))
    device_map = {"": PartialState().local_process_index} if torch.cuda.is_available() else None  # one GPU per process
    try:
        model = AutoModelForCausalLM.from_pretrained(name, quantization_config=quantization, dtype=torch_dtype,
                                                     device_map=device_map, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise model_load_error(name, "a causal language model", e) from None
    if load_in_4bit:
        keep_4bit_layers_trainable(model)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def keep_4bit_layers_trainable(model) -> int:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference, which would cut every gradient through them.

    bitsandbytes 0.50 (`Linear4bit.forward`, bitsandbytes/nn/modules.py): on a CPU with AVX512-BF16, a layer that
    runs in eval mode on an input without grad converts its weight for good to `packing_format_for_cpu`; from then
    on `matmul_4bit` sends it to `gemv_4bit`, which has no backward. One no-grad evaluation (zero-shot, or each
    epoch's) would leave LoRA training with no gradient through the base's 4-bit layers. The layer checks its
    `support_avx512bf16_for_cpu` flag first, so clearing it keeps the trainable dequantise-and-matmul path.
    """
    layers = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def add_lora(model, *, r: int, alpha: int, dropout: float, target_modules: list[str], quantized: bool,
             gradient_checkpointing: bool = True):
    """LoRA adapters (TRL's get_peft_config) on the base, after the QLoRA preparation. Applied here, not by
    SFTTrainer(peft_config=...): TRL 1.16 applies the adapter without prepare_model_for_kbit_training, which casts
    the norms to fp32 and lets gradients through frozen 4-bit layers under checkpointing, as the QLoRA recipe does."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from trl import get_peft_config

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = get_peft_config(trl_config(use_peft=True, lora_r=r, lora_alpha=alpha, lora_dropout=dropout,
                                        lora_target_modules=list(target_modules)))
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise UserError(f"LoRA: {first_line(e)}") from None


def check_adapter_folder(adapter: str) -> Path:
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"adapter folder not found or incomplete (no adapter_config.json): {adapter}")
    return path


def load_adapter(model, adapter: str):
    """Base model + a saved LoRA adapter, checked against the base before loading."""
    from peft import PeftModel

    path = check_adapter_folder(adapter)
    config = json.loads((path / "adapter_config.json").read_text())
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in config.get("target_modules") or [] if m not in names]
    if missing:
        raise UserError(f"adapter {adapter} targets modules {missing} that the base model does not have")
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (RuntimeError, ValueError) as e:  # shape mismatches: an adapter trained on another base model
        first = str(e).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[0] if first else "")
        raise UserError(f"adapter {adapter} does not match the base model: {detail}") from None
