"""Loading an encoder for sequence classification, from the Hub or a local folder, with one-line errors; run, it
prints distilbert-base-uncased's architecture table (docs/distilbert.md).

    python -m distilbert.model
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.config import RemoteCodeArguments, UserError, parse, run_main, setting
from common.data import LABEL_NAMES
from common.io import check_model_path, model_load_error
from common.precision import PrecisionArguments

ID2LABEL = dict(enumerate(LABEL_NAMES))
LABEL2ID = {v: k for k, v in ID2LABEL.items()}


@dataclass
class EncoderArguments(PrecisionArguments, RemoteCodeArguments):
    """The loop's and the Trainer's model settings."""
    model_name_or_path: str = setting("distilbert-base-uncased", "Hub id or local folder of the encoder to fine-tune")


def load_model_and_tokenizer(name: str, trust_remote_code: bool = False, num_labels: int = 2):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    check_model_path(name)
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise model_load_error(name, "model config", e) from None
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES and not trust_remote_code:
        raise UserError(f"{name}: model type '{config.model_type}' has no sequence-classification head in "
                        "transformers (use an encoder such as BERT, DistilBERT, RoBERTa or MiniLM)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=num_labels, id2label=ID2LABEL, label2id=LABEL2ID, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise model_load_error(name, "model", e) from None
    if tokenizer.pad_token is None:
        raise UserError(f"{name}: the tokenizer has no padding token")
    return model, tokenizer


def fit_max_length(max_length: int, model, tokenizer) -> int:
    """The tokens kept per review: max_length, or the model's limit where that is shorter, with a note (as HF's
    examples do): more positions than the model has would crash in its embedding."""
    limits = [model.config.max_position_embeddings]
    if tokenizer.model_max_length < 1_000_000:  # larger: transformers' "not set" sentinel
        limits.append(tokenizer.model_max_length)
    limit = min(limits)
    if max_length > limit:
        print(f"max_length {max_length} is more than the model takes: using its limit, {limit} tokens")
        return limit
    return max_length


BASE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "distilbert_base_uncased.json"


def architecture_table(config_file: str | Path = BASE_CONFIG) -> str:
    """The architecture of distilbert-base-uncased as a markdown table, read from its config; parameters counted
    on an instance of the classifier built on the meta device (no weights needed)."""
    import json

    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    values = {k: v for k, v in json.loads(Path(config_file).read_text()).items() if not k.startswith("_")}
    config = DistilBertConfig(**values, num_labels=2)
    with torch.device("meta"):
        model = DistilBertForSequenceClassification(config)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("distilbert."))
    rows = [("transformer layers", config.n_layers), ("hidden size (dim)", config.dim),
            ("attention heads", config.n_heads), ("head size", config.dim // config.n_heads),
            ("feed-forward size (hidden_dim)", config.hidden_dim),
            ("vocabulary (WordPiece, uncased)", config.vocab_size),
            ("max positions", config.max_position_embeddings), ("parameters, with the 2-class head", total),
            ("of which the classification head", head)]
    return "\n".join(["| DistilBERT (distilbert-base-uncased) | value |", "| --- | --- |",
                      *[f"| {name} | {value:,} |" for name, value in rows]])


def main(argv=None) -> None:
    parse((), argv)  # no settings: --help prints the usage, anything else is an error
    print(architecture_table())


if __name__ == "__main__":
    run_main(main)
