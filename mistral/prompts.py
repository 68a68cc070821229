"""Prompts for the Mistral experiment: one function builds the token ids used in training and in evaluation.

A prompt is the instruction and the review in `prompt_template`, wrapped in the tokenizer's chat template when it
has one (`[INST] ... [/INST]` for Mistral Instruct), else followed by nothing: the template ends with the answer
cue. The completion is one answer word, then EOS, tokenised as the chat template renders an assistant turn: Mistral
encodes each message on its own, so its answer starts a word ("▁positive"), which joining strings would not give.
Long reviews are cut inside the prompt so that prompt, answer and EOS always fit in `max_length`: the answer is never
truncated.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.config import UserError, setting
from common.data import LABEL_NAMES


@dataclass
class PromptArguments:
    instruction: str = setting("Classify the sentiment of this movie review as positive or negative.",
                               "the task, put into the prompt")
    prompt_template: str = setting("{instruction}\n\nReview: {review}\n\nSentiment:",
                                   "the user turn; must hold {review} (and may hold {instruction})")
    answer_words: list[str] = setting(list(LABEL_NAMES), "the answers for labels 0 and 1")
    use_chat_template: bool = setting(True, "wrap the prompt in the tokenizer's chat template when it has one")
    answer_variants: bool = setting(True, "label scoring sums each label's case and leading-space variants")


SAMPLE_REVIEW = "A film."   # the review with which answers are tokenised where they stand, after a prompt


@dataclass
class PromptFormat:
    """How reviews become token ids; built once per tokenizer by `make_format`."""

    tokenizer: object
    template: str
    instruction: str
    use_chat: bool
    max_length: int
    completion_ids: tuple[list[int], list[int]] = ([], [])  # answer + EOS as they follow a prompt (label 0, 1)
    label_token_ids: tuple[list[int], list[int]] = ([], [])  # first tokens that label scoring sums, per label

    def render(self, review: str, answer: str | None = None) -> str:
        """The prompt as text; with `answer`, the whole exchange as the chat template renders an assistant turn."""
        text = self.template.format(instruction=self.instruction, review=review)
        if not self.use_chat:
            return text if answer is None else f"{text} {answer}"
        messages = [{"role": "user", "content": text}]
        if answer is None:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                                  tokenize=False)

    def encode(self, text: str) -> list[int]:
        # a rendered chat prompt already holds the BOS text; a plain one gets the tokenizer's special tokens
        return self.tokenizer(text, add_special_tokens=not self.use_chat)["input_ids"]

    def encode_prompt(self, review: str) -> list[int]:
        return self.encode(self.render(review))

    def prompt_ids(self, review: str) -> list[int]:
        """The prompt's ids, the review shortened (by whole tokens) until answer and EOS fit in max_length."""
        budget = self.max_length - max(len(c) for c in self.completion_ids)
        ids = self.encode_prompt(review)
        if len(ids) <= budget:
            return ids
        review_ids = self.tokenizer(review, add_special_tokens=False)["input_ids"]
        keep = len(review_ids) - (len(ids) - budget)
        for _ in range(8):  # decoding and re-encoding can shift a token or two: shrink until it fits
            if keep <= 0:
                raise UserError(f"max_length {self.max_length} leaves no room for the review in the prompt template")
            ids = self.encode_prompt(self.tokenizer.decode(review_ids[:keep]))
            if len(ids) <= budget:
                return ids
            keep -= len(ids) - budget
        raise UserError(f"could not fit a review into max_length {self.max_length}")

    def example(self, review: str, label: int) -> dict:
        """Training example: prompt + answer + EOS, with the completion mask on answer and EOS only."""
        prompt, completion = self.prompt_ids(review), self.completion_ids[label]
        return {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}

    def after_prompt(self, text: str) -> list[int] | None:
        """The ids that `text` (the probe's prompt followed by more) adds after the prompt's own ids, or None when
        the addition merges with the prompt's last token."""
        prompt, full = self.encode_prompt(SAMPLE_REVIEW), self.encode(text)
        return full[len(prompt):] if full[:len(prompt)] == prompt and len(full) > len(prompt) else None

    def completion(self, word: str) -> list[int]:
        """Answer + EOS, tokenised as the chat template renders an assistant turn (Mistral: "▁positive </s>";
        ChatML: "positive <|im_end|>"), cut after EOS: a template's trailing newline is not part of the answer."""
        ids = self.after_prompt(self.render(SAMPLE_REVIEW, word))
        if ids is None:
            raise UserError(f"answer word {word!r} merges with the end of the prompt; end the template with a "
                            "separator such as ':' or a newline")
        eos = self.tokenizer.eos_token_id
        return ids[:ids.index(eos) + 1] if eos in ids else ids + [eos]

    def variants(self, word: str) -> set[int]:
        """First tokens of the ways a model may start this answer besides the trained form: each casing (negative,
        Negative) right after the prompt or after a space, where that first token is the whole word. A token that
        spells only the word's beginning (Mistral's `▁Pos`, `Neg`) also begins other words (position, negligible):
        it is not counted (docs/mistral.md gives the measurement behind this)."""
        found = set()
        for form in dict.fromkeys([word, word.lower(), word.capitalize()]):
            for sep in ("", " "):
                ids = self.after_prompt(self.render(SAMPLE_REVIEW) + sep + form)
                if ids and self.tokenizer.decode(ids[:1]).strip() == form:
                    found.add(ids[0])
        return found


def make_format(tokenizer, prompt: PromptArguments, max_length: int) -> PromptFormat:
    if "{review}" not in prompt.prompt_template:
        raise UserError("prompt_template must contain the placeholder {review}")
    words = prompt.answer_words
    if len(words) != 2 or words[0] == words[1]:
        raise UserError(f"answer_words: expected two different words (negative, positive), got {words}")
    use_chat = prompt.use_chat_template and bool(getattr(tokenizer, "chat_template", None))
    fmt = PromptFormat(tokenizer, prompt.prompt_template, prompt.instruction, use_chat, max_length)
    fmt.completion_ids = (fmt.completion(words[0]), fmt.completion(words[1]))
    first = [c[0] for c in fmt.completion_ids]
    if first[0] == first[1]:
        name = tokenizer.convert_ids_to_tokens(first[0])
        raise UserError(f"answer words {words} start with the same token {name!r} under this tokenizer; "
                        "choose words whose first tokens differ")
    if prompt.answer_variants:
        neg, pos = (fmt.variants(word) | {f} for word, f in zip(words, first))
        neg, pos = neg - pos, pos - neg  # a token that starts both answers says nothing about either
    else:
        neg, pos = set(), set()
    # the trained form first: with answer_variants false, it alone is scored
    fmt.label_token_ids = tuple([f] + sorted(v - {f}) for f, v in zip(first, (neg, pos)))
    return fmt


def set_padding(tokenizer) -> None:
    """A padding token distinct from EOS: with pad == EOS, masking padding would also mask the EOS the model must
    learn to emit. Mistral's tokenizer has none; its <unk> serves, else a new <pad> token is added."""
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
