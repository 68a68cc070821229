"""Speed of evaluation: batched label scoring against one-at-a-time greedy generation (the original method).

    make bench-mistral DATA_DIR=../shared/data/imdb                       # small random Mistral, CPU-sized
    python -m mistral.bench --data_dir ../shared/data/imdb --model_name_or_path mistralai/Mistral-7B-Instruct-v0.2
    python -m mistral.bench --train_step true --size 7b                   # on a GPU: one QLoRA step of 7B, timed

Both methods classify the same reviews with the same model and prompts, in one process; prints reviews/s of each
and the ratio, and how often label scoring (answer variants summed, and the trained first token alone) picks the
label that greedy generation names, with each method's accuracy: on a real model, the check of the scoring choice.
Without --model_name_or_path, a random Mistral of `size` is built with a BPE tokenizer trained on the reviews: the
architecture and the prompt lengths set the speed, not the weights.

With --train_step true it instead times QLoRA training steps of that model (4-bit NF4 base, LoRA r 64 on the
recipe's q_proj and v_proj, gradient checkpointing, batch 1 of max_length tokens, paged AdamW on a GPU): seconds per
step, tokens/s and peak GPU memory. The random model is built in 4-bit directly on the device (random_4bit_mistral),
layer by layer, as load_base would load a checkpoint: no 15 GB file is written.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common.config import FiguresArguments, parse, run_main, setting
from common.data import ImdbArguments, make_splits
from common.io import write_json
from fixtures.random_models import bpe_tokenizer, save_random_mistral
from mistral.evaluate import batch_size_setting, generate_labels, score_labels
from mistral.model import load_base
from mistral.prompts import PromptArguments, make_format

SIZES = {
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2),
    "7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8),
}


@dataclass
class BenchConfig(ImdbArguments, FiguresArguments):
    model_name_or_path: str | None = setting(None, "a causal LM to time; default: a random Mistral of `size`")
    size: str = setting("small", "random Mistral size: small (CPU) or 7b (Mistral-7B's shape)")
    load_in_4bit: bool = setting(False, "load the model in 4-bit NF4")
    n_reviews: int = setting(200, "balanced test reviews classified by both methods", at_least=2)
    n_tokenizer_reviews: int = setting(900, "training reviews the random model's BPE tokenizer learns from",
                                       at_least=1)
    batch_size: int = batch_size_setting()
    max_length: int = setting(512, "prompt tokens at most", at_least=1)
    max_new_tokens: int = setting(5, "tokens generated per review", at_least=1)
    seed: int = setting(42, "seed of the random model", at_least=0)
    train_step: bool = setting(False, "time QLoRA training steps instead of evaluation")
    steps: int = setting(5, "timed training steps (after one warm-up step)", at_least=1)

def mistral_config(size: str, vocab_size: int = 32000):
    from transformers import MistralConfig

    return MistralConfig(vocab_size=vocab_size, max_position_embeddings=4096, sliding_window=None, bos_token_id=1,
                         eos_token_id=2, **SIZES[size])


def build_random_mistral(cfg: BenchConfig, texts: list[str], folder: Path) -> Path:
    """A random Mistral of cfg.size with a BPE tokenizer learnt from the texts (7B in bf16: fp32 would need 28 GB)."""
    import torch

    dtype = torch.bfloat16 if cfg.size == "7b" else torch.float32
    return save_random_mistral(folder, bpe_tokenizer(texts), cfg.seed, dtype=dtype, max_position_embeddings=4096,
                               sliding_window=None, **SIZES[cfg.size])


def random_4bit_mistral(config, device, compute_dtype=None, seed: int = 0):
    """A Mistral of `config` with random weights, its decoder's linear layers in 4-bit NF4 with double quantisation
    (what load_base's BitsAndBytesConfig makes of a checkpoint), built on `device` layer by layer: at 7B no 15 GB
    checkpoint has to be written and read back, and no full-precision copy is ever whole in memory."""
    import bitsandbytes as bnb
    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from transformers import MistralForCausalLM

    from common.precision import compute_dtype as auto_dtype
    from mistral.model import keep_4bit_layers_trainable

    dtype = compute_dtype or auto_dtype()
    generator = torch.Generator(device).manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator) * config.initializer_range

    with init_empty_weights():
        model = MistralForCausalLM(config)
    for module in list(model.model.layers.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False, compute_dtype=dtype,
                                          compress_statistics=True, quant_type="nf4", device="meta")
                layer.weight = bnb.nn.Params4bit(normal(child.out_features, child.in_features), requires_grad=False,
                                                 compress_statistics=True, quant_type="nf4")
                setattr(module, name, layer.to(device))  # moving quantises
    for name, param in list(model.named_parameters()):
        if param.device.type == "meta":  # embeddings, norms, lm_head: kept in the compute dtype, as from a checkpoint
            value = torch.ones(param.shape, dtype=dtype, device=device) if "norm" in name else normal(*param.shape)
            set_module_tensor_to_device(model, name, device, value=value)
    model.model.rotary_emb.to(device)  # buffers were made for real (init_empty_weights leaves them), on the CPU
    model.is_loaded_in_4bit = True  # peft's prepare_model_for_kbit_training reads this flag
    keep_4bit_layers_trainable(model)
    return model


def measure_train_step(cfg: BenchConfig, model) -> dict:
    """Seconds per QLoRA step, tokens/s and peak GPU memory, on random tokens (the content does not set the speed)."""
    import torch

    from mistral.model import CausalLMArguments, add_lora

    lora = CausalLMArguments()
    model = add_lora(model, r=lora.lora_r, alpha=lora.lora_alpha, dropout=lora.lora_dropout,
                     target_modules=lora.lora_target_modules, quantized=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if torch.cuda.is_available():
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW32bit(params, lr=2e-4)
    else:
        optimizer = torch.optim.AdamW(params, lr=2e-4)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(3, model.config.vocab_size, (1, cfg.max_length), generator=generator).to(device)
    model.train()

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: kernels, allocator, optimizer state
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / cfg.steps
    report = {"size": cfg.size, "max_length": cfg.max_length, "seconds_per_step": seconds,
              "tokens_per_second": cfg.max_length / seconds, "trainable_parameters": sum(p.numel() for p in params),
              "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    peak = f"{report['peak_gpu_memory_gb']:.2f} GB peak GPU memory" if report["peak_gpu_memory_gb"] else "no GPU"
    print(f"\nQLoRA step, random Mistral ({cfg.size}) in 4-bit, LoRA r {lora.lora_r}, 1 x {cfg.max_length} tokens, "
          f"on {report['device']}: {seconds:.2f} s/step, {report['tokens_per_second']:.0f} tokens/s, {peak}")
    return report


def train_step_report(cfg: BenchConfig) -> dict:
    import torch

    if cfg.model_name_or_path:
        model, _ = load_base(cfg.model_name_or_path, load_in_4bit=True)
    else:
        model = random_4bit_mistral(mistral_config(cfg.size), "cuda" if torch.cuda.is_available() else "cpu",
                                    seed=cfg.seed)
    report = measure_train_step(cfg, model)
    if cfg.output:
        write_json(cfg.output, report)
    return report


def time_scoring_and_generation(model, fmt, reviews: list[str], *, batch_size: int, max_new_tokens: int,
                                n_generate: int | None = None) -> tuple[dict, list[int], list[int | None]]:
    """Reviews/s of label scoring (batched) and of greedy generation (one at a time; over the first n_generate
    reviews, as it is the slow one), after a warm-up batch; and the predictions of each."""
    import torch

    def timed(run):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    score_labels(model, fmt, reviews[:batch_size], batch_size)  # warm-up: kernels, allocator
    to_generate = reviews[:n_generate] if n_generate else reviews
    scored, score_s = timed(lambda: score_labels(model, fmt, reviews, batch_size))
    (generated, _), generate_s = timed(lambda: generate_labels(model, fmt, to_generate, PromptArguments().answer_words,
                                                               max_new_tokens))
    rates = {"label_scoring": len(reviews) / score_s, "greedy_generation": len(to_generate) / generate_s}
    return rates, scored, generated


def scoring_agreement(preds: dict[str, list[int]], generated: list[int | None], labels: list[int]) -> dict:
    """How often each scoring names the label that generation names (where it names one), and every accuracy."""
    parsed = [i for i, g in enumerate(generated) if g is not None]
    agrees = {k: sum(p[i] == generated[i] for i in parsed) / max(len(parsed), 1) for k, p in preds.items()}
    accuracy = {k: sum(a == y for a, y in zip(p, labels)) / len(labels)
                for k, p in {"generation": generated, **preds}.items()}
    return {"generation_parsed": len(parsed), "agrees_with_generation": agrees, "accuracy": accuracy}


SETTINGS = (BenchConfig,)


def main(argv=None) -> dict:
    (cfg,) = parse(SETTINGS, argv)
    if cfg.train_step:
        return train_step_report(cfg)
    splits, _ = make_splits("balanced", cfg.split_seed, cfg.data_dir, n_train=cfg.n_tokenizer_reviews, n_eval=2,
                            n_test=max(cfg.n_reviews + cfg.n_reviews % 2, 2))
    reviews = splits["test"]["text"].tolist()[:cfg.n_reviews]
    labels = splits["test"]["label"].tolist()[:cfg.n_reviews]
    prompt = PromptArguments()
    with tempfile.TemporaryDirectory() as tmp:
        name = cfg.model_name_or_path or str(build_random_mistral(cfg, splits["train"]["text"].tolist()
                                                                  + reviews, Path(tmp) / "model"))
        model, tokenizer = load_base(name, cfg.load_in_4bit)
    fmt = make_format(tokenizer, prompt, cfg.max_length)
    rates, scored, generated = time_scoring_and_generation(model, fmt, reviews, batch_size=cfg.batch_size,
                                                               max_new_tokens=cfg.max_new_tokens)
    preds = {"scoring, variants summed": scored}
    fmt_one = make_format(tokenizer, dataclasses.replace(prompt, answer_variants=False), cfg.max_length)
    preds["scoring, first token only"] = score_labels(model, fmt_one, reviews, cfg.batch_size)
    agreement = scoring_agreement(preds, generated, labels)
    n_tokens = sum(len(fmt.prompt_ids(r)) for r in reviews) / len(reviews)
    report = {"model": cfg.model_name_or_path or f"random mistral ({cfg.size})", "n_reviews": len(reviews),
              "mean_prompt_tokens": n_tokens, "batch_size": cfg.batch_size, "max_new_tokens": cfg.max_new_tokens,
              "reviews_per_second": rates, "speedup": rates["label_scoring"] / rates["greedy_generation"],
              **agreement}
    print(f"\n{len(reviews)} real test reviews, mean {n_tokens:.0f} prompt tokens, model: {report['model']}")
    print(f"  label scoring (batches of {cfg.batch_size})   {rates['label_scoring']:8.2f} reviews/s")
    print(f"  greedy generation, one at a time, {cfg.max_new_tokens} new tokens   "
          f"{rates['greedy_generation']:8.2f} reviews/s")
    print(f"label scoring / generation = {report['speedup']:.1f}x")
    print(f"greedy generation named a label for {agreement['generation_parsed']} of {len(reviews)} reviews "
          f"(accuracy {agreement['accuracy']['generation']:.3f}, unparsed counted wrong)")
    for name, value in agreement["agrees_with_generation"].items():
        print(f"  {name:28s} agrees with it on {value:.3f} of those; accuracy {agreement['accuracy'][name]:.3f}")
    if cfg.output:
        write_json(cfg.output, report)
    return report


if __name__ == "__main__":
    run_main(main)
