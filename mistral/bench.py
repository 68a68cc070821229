"""Speed of evaluation: batched label scoring against one-at-a-time greedy generation (the original method).

    make bench-mistral DATA_DIR=../shared/data/imdb                       # small random Mistral, CPU-sized
    python -m mistral.bench --data_dir ../shared/data/imdb --model_name_or_path mistralai/Mistral-7B-Instruct-v0.2

Both methods classify the same reviews with the same model and prompts, in one process; prints reviews/s of each
and the ratio. Without --model_name_or_path, a random Mistral of `size` is built with a BPE tokenizer trained on the
reviews: the architecture and the prompt lengths set the speed, not the weights.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common.config import parse_config, run_main
from common.data import make_splits
from common.io import write_json
from mistral.evaluate import generate_labels, score_labels
from mistral.model import load_base
from mistral.prompts import PromptArguments, make_format

SIZES = {
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2),
    "7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8),
}


@dataclass
class BenchConfig:
    data_dir: str | None = None
    model_name_or_path: str | None = None
    size: str = "small"
    load_in_4bit: bool = False
    n_reviews: int = 200
    batch_size: int = 8
    max_length: int = 512
    max_new_tokens: int = 5
    seed: int = 42
    output: str | None = None


def build_random_mistral(cfg: BenchConfig, texts: list[str], folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=32000, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    config = MistralConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, sliding_window=None,
                           bos_token_id=1, eos_token_id=2, **SIZES[cfg.size])
    torch.manual_seed(cfg.seed)
    MistralForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv=None) -> dict:
    cfg = parse_config(BenchConfig, argv)
    splits, _ = make_splits("balanced", cfg.seed, cfg.data_dir, n_test=max(cfg.n_reviews + cfg.n_reviews % 2, 2))
    reviews = splits["test"]["text"].tolist()[:cfg.n_reviews]
    prompt = PromptArguments()
    with tempfile.TemporaryDirectory() as tmp:
        name = cfg.model_name_or_path or str(build_random_mistral(cfg, splits["train"]["text"].tolist()
                                                                  + reviews, Path(tmp) / "model"))
        model, tokenizer = load_base(name, cfg.load_in_4bit)
    fmt = make_format(tokenizer, prompt.prompt_template, prompt.instruction, prompt.answer_words, cfg.max_length,
                      prompt.use_chat_template)
    score_labels(model, fmt, reviews[:cfg.batch_size], cfg.batch_size)  # warm-up
    timings = {}
    start = time.perf_counter()
    score_labels(model, fmt, reviews, cfg.batch_size)
    timings["label_scoring"] = time.perf_counter() - start
    start = time.perf_counter()
    generate_labels(model, fmt, reviews, prompt.answer_words, cfg.max_new_tokens)
    timings["greedy_generation"] = time.perf_counter() - start
    rates = {k: len(reviews) / v for k, v in timings.items()}
    n_tokens = sum(len(fmt.prompt_ids(r)) for r in reviews) / len(reviews)
    report = {"model": cfg.model_name_or_path or f"random mistral ({cfg.size})", "n_reviews": len(reviews),
              "mean_prompt_tokens": n_tokens, "batch_size": cfg.batch_size, "max_new_tokens": cfg.max_new_tokens,
              "reviews_per_second": rates, "speedup": rates["label_scoring"] / rates["greedy_generation"]}
    print(f"\n{len(reviews)} real test reviews, mean {n_tokens:.0f} prompt tokens, model: {report['model']}")
    print(f"  label scoring (batches of {cfg.batch_size})   {rates['label_scoring']:8.2f} reviews/s")
    print(f"  greedy generation, one at a time, {cfg.max_new_tokens} new tokens   "
          f"{rates['greedy_generation']:8.2f} reviews/s")
    print(f"label scoring / generation = {report['speedup']:.1f}x")
    if cfg.output:
        write_json(cfg.output, report)
    return report


if __name__ == "__main__":
    run_main(main)
