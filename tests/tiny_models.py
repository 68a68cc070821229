"""Tiny random models and tokenizers, built in-process (no pretrained weights, no network)."""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from tests.synthetic import make_imdb


def corpus() -> list[str]:
    raw = make_imdb(n_train=200, n_test=0, n_dup=0)
    return list(raw["train"]["text"])


def wordpiece_tokenizer(texts: list[str], vocab_size: int = 300, model_max_length: int = 512):
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=model_max_length)


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
