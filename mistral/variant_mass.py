"""Which first tokens should label scoring sum? The probability a model puts on each candidate at the answer position.

    python -m mistral.variant_mass --model_name_or_path models/smollm2-135m-instruct --data_dir ../shared/data/imdb \
        --n_train 200 --n_eval 50 --n_test 400 --max_length 256 --output_dir runs/variant_mass/zero_shot
    python -m mistral.variant_mass ... --adapter runs/small/mistral_sft/best_adapter --output_dir .../tuned

Candidates, per label: the whole words (the answer's first token where that token is the whole word: `positive`,
`▁positive`, `Positive`, ...; what `answer_variants` sums) and word prefixes the vocabulary holds as single tokens
(`pos`, `Pos`, `▁Pos`, ...: each also begins other words, position or possibly). One forward pass per batch gives
every candidate's probability; results.json holds the accuracy of three scoring sets (the trained first token,
whole words, whole words and prefixes) and each candidate's mean probability and share of the candidates' mass.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import parse, run_main, setting
from common.data import BalancedArguments
from common.metrics import classification_metrics
from common.run_folder import RunLogger
from mistral.data import balanced_splits
from mistral.evaluate import ScoringArguments, left_pad
from mistral.model import CausalLMArguments, load_adapter, load_base, load_tokenizer
from mistral.prompts import SAMPLE_REVIEW, PromptArguments, make_format


@dataclass
class MassArguments(ScoringArguments):
    output_dir: str = setting("runs/variant_mass", "the run folder: config and results")

SETTINGS = (MassArguments, BalancedArguments, CausalLMArguments, PromptArguments)


def prefix_tokens(fmt, word: str) -> set[int]:
    """Single vocabulary tokens, right after the prompt or after a space, that spell a proper prefix of 3 or more
    letters of the word in either casing."""
    found = set()
    for form in dict.fromkeys([word.lower(), word.capitalize()]):
        for k in range(3, len(form)):
            for sep in ("", " "):
                ids = fmt.after_prompt(fmt.render(SAMPLE_REVIEW) + sep + form[:k])
                if ids and len(ids) == 1:
                    found.add(ids[0])
    return found


def candidate_sets(fmt, words: list[str]) -> dict[str, tuple[list[int], list[int]]]:
    trained = [ids[0] for ids in fmt.completion_ids]
    whole = [sorted(set(ids)) for ids in fmt.label_token_ids]
    prefixes = [prefix_tokens(fmt, w) - set(whole[i]) for i, w in enumerate(words)]
    shared = prefixes[0] & prefixes[1]
    return {"trained_token": ([trained[0]], [trained[1]]), "whole_words": tuple(whole),
            "whole_words_and_prefixes": tuple(sorted(set(whole[i]) | (prefixes[i] - shared)) for i in range(2))}


@torch.no_grad()
def answer_probabilities(model, fmt, reviews: list[str], tokens: list[int], batch_size: int) -> torch.Tensor:
    """P(token) at the answer position, for each review (rows) and each candidate token (columns)."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(reviews), batch_size):
        batch = left_pad([fmt.prompt_ids(r) for r in reviews[start:start + batch_size]], fmt.tokenizer.pad_token_id,
                         device)
        logits = model(**batch, logits_to_keep=1).logits[:, -1].float()
        rows.append(logits.log_softmax(-1)[:, tokens].exp().cpu())
    return torch.cat(rows)


def main(argv=None) -> dict:
    args, data_args, model_args, prompt_args = parse(SETTINGS, argv)
    splits, manifest = balanced_splits(data_args)
    test = splits["test"]
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    fmt = make_format(tokenizer, prompt_args, args.max_length)
    sets = candidate_sets(fmt, prompt_args.answer_words)
    model, _ = load_base(model_args.model_name_or_path, model_args.load_in_4bit, model_args.precision,
                         tokenizer=tokenizer)
    if args.adapter:
        model = load_adapter(model, args.adapter)
    tokens = sorted({t for neg, pos in sets.values() for t in neg + pos})
    probs = answer_probabilities(model, fmt, test["text"].tolist(), tokens, args.batch_size)
    column = {t: i for i, t in enumerate(tokens)}
    labels = test["label"].tolist()
    scoring = {}
    for name, (neg, pos) in sets.items():
        margin = (probs[:, [column[t] for t in pos]].sum(-1).log() - probs[:, [column[t] for t in neg]].sum(-1).log())
        scoring[name] = {"tokens": [tokenizer.convert_ids_to_tokens(t) for t in neg + pos],
                         **classification_metrics(labels, (margin > 0).long().tolist())}
    everything = probs.sum(-1, keepdim=True)
    whole = set(sets["whole_words"][0] + sets["whole_words"][1])
    mass = [{"token": tokenizer.convert_ids_to_tokens(t), "label": int(t in sets["whole_words_and_prefixes"][1]),
             "kind": "whole word" if t in whole else "prefix", "mean_probability": float(probs[:, i].mean()),
             "share_of_candidate_mass": float((probs[:, i:i + 1] / everything).mean())}
            for i, t in enumerate(tokens)]
    config = {**vars(args), **vars(data_args), **vars(model_args), **vars(prompt_args)}
    logger = RunLogger(args.output_dir, config, report_to="none")
    results = {"script": "mistral.variant_mass", "model": model_args.model_name_or_path, "adapter": args.adapter,
               "scoring": scoring, "mass": sorted(mass, key=lambda m: -m["mean_probability"]),
               "prefix_share_of_candidate_mass": sum(m["share_of_candidate_mass"] for m in mass
                                                     if m["kind"] == "prefix"),
               "manifest": manifest}
    logger.finish(results)
    for name, m in scoring.items():
        print(f"{name:26s} accuracy {m['accuracy']:.4f}  ({' '.join(m['tokens'])})")
    for m in results["mass"]:
        print(f"  {m['token']!r:14} label {m['label']} {m['kind']:10s} mean P {m['mean_probability']:.5f}  "
              f"share of candidate mass {m['share_of_candidate_mass']:.4f}")
    print(f"prefix tokens' share of the candidates' mass: {results['prefix_share_of_candidate_mass']:.4f}"
          f"  -> {Path(args.output_dir) / 'results.json'}")
    return results


if __name__ == "__main__":
    run_main(main)
