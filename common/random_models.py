"""Random-weight models and tokenizers trained on the fly: what the benchmarks, the demo, the GPU check and the tests
build instead of downloading (the architecture and the token counts set the speed, not the weights)."""
from __future__ import annotations

import string
from pathlib import Path


def wordpiece_tokenizer(texts: list[str], vocab_size: int = 30522):
    """A BERT-like uncased WordPiece ([PAD] 0 ... [MASK] 4), learnt from the texts."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def bpe_tokenizer(texts: list[str], vocab_size: int = 32000, chat_template: str | None = None):
    """A Llama/Mistral-like BPE over metaspace pieces (<unk> 0, <s> 1, </s> 2; <s> prepended; no padding token of
    its own), learnt from the texts; every printable ASCII character is in it, so no prompt has <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    alphabet = list(string.ascii_letters + string.digits + string.punctuation)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                                       initial_alphabet=alphabet))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        model_max_length=4096)
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def save_random_distilbert(folder: Path, tokenizer, seed: int = 0, min_vocab: int = 0, **sizes) -> Path:
    """A random DistilBertForSequenceClassification (2 labels) of the given sizes (dim, n_layers, n_heads,
    hidden_dim) and its tokenizer, saved as a checkpoint folder; the vocabulary at least min_vocab entries."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=max(len(tokenizer), min_vocab), max_position_embeddings=512, num_labels=2,
                              pad_token_id=tokenizer.pad_token_id, **sizes)
    torch.manual_seed(seed)
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def save_random_mistral(folder: Path, tokenizer, seed: int = 0, dtype=None, **config) -> Path:
    """A random MistralForCausalLM (MistralConfig fields in `config`) and its tokenizer, saved as a checkpoint
    folder, its weights in `dtype` (default: torch's default dtype)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **config)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype or default)
    try:
        MistralForCausalLM(config).save_pretrained(folder)
    finally:
        torch.set_default_dtype(default)
    tokenizer.save_pretrained(folder)
    return Path(folder)
