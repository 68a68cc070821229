"""Tiny random models and tokenizers, built in-process (no pretrained weights, no network)."""
from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from common.synthetic import make_imdb


def corpus() -> list[str]:
    raw = make_imdb(n_train=200, n_test=0, n_dup=0)
    return list(raw["train"]["text"])


def wordpiece_tokenizer(texts: list[str], vocab_size: int = 300):
    from distilbert.bench import train_tokenizer

    return train_tokenizer(texts, vocab_size)


def save_tiny_distilbert(folder: Path, dim: int = 32, n_layers: int = 2, seed: int = 0, texts=None) -> Path:
    """A random 2-layer DistilBERT classifier and its WordPiece tokenizer, saved as a local checkpoint folder."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = wordpiece_tokenizer(texts or corpus())
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=dim, n_layers=n_layers, n_heads=2, hidden_dim=2 * dim,
                              max_position_embeddings=512, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                 "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def bpe_tokenizer(texts: list[str], vocab_size: int = 400, chat_template: str | None = None):
    """A Llama/Mistral-like tokenizer: BPE over metaspace pieces, <s> prepended, no padding token of its own."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = __import__("tokenizers").decoders.Metaspace()
    specials = ["<unk>", "<s>", "</s>"]
    words = "positive negative review sentiment classify movie answer".split()
    alphabet = list(string.ascii_letters + string.digits + string.punctuation)  # no <unk> in prompts
    tok.train_from_iterator(texts + words * 50, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                                     initial_alphabet=alphabet))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        model_max_length=4096)
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def save_tiny_mistral(folder: Path, sliding_window: int = 16, seed: int = 0, chat_template: str | None = None,
                      hidden_size: int = 64, tokenizer=None, initializer_range: float = 0.02) -> Path:
    """A random 2-layer MistralForCausalLM (GQA: 4 heads, 2 KV heads; a small sliding window) and its tokenizer:
    a small BPE trained on the fly, or the one given (Mistral's real 32k tokenizer, say)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer = tokenizer or bpe_tokenizer(corpus(), chat_template=chat_template)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=1024, sliding_window=sliding_window,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           tie_word_embeddings=False, initializer_range=initializer_range)
    torch.manual_seed(seed)
    MistralForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
