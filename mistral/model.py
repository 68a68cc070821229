"""Loading a causal LM for the Mistral experiment: 4-bit NF4 (bitsandbytes) or not, LoRA adapters (peft)."""
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


def load_base(name: str, load_in_4bit: bool = True, precision: str = "auto", trust_remote_code: bool = False,
              tokenizer=None):
    """The base model (4-bit NF4 with double quantisation computing in `precision`, or in `precision`) and its
    tokenizer."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tokenizer = tokenizer or load_tokenizer(name, trust_remote_code)
    torch_dtype = compute_dtype(precision)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch_dtype) if load_in_4bit else None
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
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:  # casts norms to fp32, enables input grads for checkpointing through frozen 4-bit layers
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        bias="none", task_type="CAUSAL_LM")
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
