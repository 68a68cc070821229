"""Tiny random models and tokenizers, built in-process (no pretrained weights, no network)."""
from __future__ import annotations

from pathlib import Path

from fixtures.random_models import bpe_tokenizer, save_random_distilbert, save_random_mistral, wordpiece_tokenizer
from fixtures.synthetic import make_imdb

__all__ = ["CHAT_TEMPLATE", "bpe_tokenizer", "corpus", "save_tiny_distilbert", "save_tiny_mistral",
           "wordpiece_tokenizer"]
ANSWER_WORDS = "positive negative review sentiment classify movie answer".split()  # whole tokens in a tiny vocab


def corpus() -> list[str]:
    raw = make_imdb(n_train=200, n_test=0, n_dup=0)
    return list(raw["train"]["text"])


def save_tiny_distilbert(folder: Path, dim: int = 32, n_layers: int = 2, seed: int = 0, texts=None) -> Path:
    """A random 2-layer DistilBERT classifier and its WordPiece tokenizer (300 entries), as a local checkpoint."""
    return save_random_distilbert(folder, wordpiece_tokenizer(texts or corpus(), 300), seed, dim=dim,
                                  n_layers=n_layers, n_heads=2, hidden_dim=2 * dim)


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                 "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def save_tiny_mistral(folder: Path, sliding_window: int = 16, seed: int = 0, *, chat_template: str | None = None,
                      hidden_size: int = 64, tokenizer=None, initializer_range: float = 0.02) -> Path:
    """A random 2-layer MistralForCausalLM (GQA: 4 heads, 2 KV heads; a small sliding window) and its tokenizer:
    a 400-entry BPE trained on the fly, or the one given (Mistral's real 32k tokenizer, say)."""
    tokenizer = tokenizer or bpe_tokenizer(corpus() + ANSWER_WORDS * 50, 400, chat_template)
    return save_random_mistral(folder, tokenizer, seed, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               max_position_embeddings=1024, sliding_window=sliding_window,
                               tie_word_embeddings=False, initializer_range=initializer_range)
