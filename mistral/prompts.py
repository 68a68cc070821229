"""Prompts for the Mistral experiment: one function builds the token ids used in training and in evaluation.

A prompt is the instruction and the review in `prompt_template`, wrapped in the tokenizer's chat template when it
has one (`[INST] ... [/INST]` for Mistral Instruct), else followed by nothing: the template ends with the answer
cue. The completion is one answer word, then EOS. Long reviews are cut inside the prompt so that prompt, answer and
EOS always fit in `max_length`: the answer is never truncated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.config import UserError


@dataclass
class PromptArguments:
    instruction: str = "Classify the sentiment of this movie review as positive or negative."
    prompt_template: str = "{instruction}\n\nReview: {review}\n\nSentiment:"   # must hold {review}
    answer_words: list[str] = field(default_factory=lambda: ["negative", "positive"])  # labels 0 and 1
    use_chat_template: bool = True        # wrap the prompt in the tokenizer's chat template when it has one


@dataclass
class PromptFormat:
    """How reviews become token ids; built once per tokenizer by `make_format`."""

    tokenizer: object
    template: str
    instruction: str
    use_chat: bool
    answer_ids: tuple[list[int], list[int]]   # token ids of each answer word as it follows a prompt (label 0, 1)
    max_length: int

    @property
    def label_token_ids(self) -> tuple[int, int]:
        """The first token of each answer: what label scoring compares."""
        return self.answer_ids[0][0], self.answer_ids[1][0]

    def render(self, review: str) -> str:
        text = self.template.format(instruction=self.instruction, review=review)
        if self.use_chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return text

    def encode_prompt(self, review: str) -> list[int]:
        # a rendered chat prompt already holds the BOS text; a plain one gets the tokenizer's special tokens
        return self.tokenizer(self.render(review), add_special_tokens=not self.use_chat)["input_ids"]

    def prompt_ids(self, review: str) -> list[int]:
        """The prompt's ids, the review shortened (by whole tokens) until answer and EOS fit in max_length."""
        budget = self.max_length - max(len(a) for a in self.answer_ids) - 1
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
        prompt = self.prompt_ids(review)
        completion = self.answer_ids[label] + [self.tokenizer.eos_token_id]
        return {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}


def make_format(tokenizer, prompt_template: str, instruction: str, answer_words: list[str], max_length: int,
                use_chat_template: bool = True) -> PromptFormat:
    if "{review}" not in prompt_template:
        raise UserError("prompt_template must contain the placeholder {review}")
    if len(answer_words) != 2 or answer_words[0] == answer_words[1]:
        raise UserError(f"answer_words: expected two different words (negative, positive), got {answer_words}")
    use_chat = use_chat_template and bool(getattr(tokenizer, "chat_template", None))
    fmt = PromptFormat(tokenizer, prompt_template, instruction, use_chat, ([], []), max_length)
    reference = fmt.encode_prompt("A film.")
    answers = []
    for word in answer_words:
        # tokenise the answer where it stands, after a prompt: a leading space or a merge changes the ids
        completion = word if use_chat else " " + word
        full = tokenizer(fmt.render("A film.") + completion, add_special_tokens=not use_chat)["input_ids"]
        if full[:len(reference)] != reference:
            raise UserError(f"answer word {word!r} merges with the end of the prompt; end the template with a "
                            "separator such as ':' or a newline")
        answers.append(full[len(reference):])
    if answers[0][0] == answers[1][0]:
        names = [tokenizer.convert_ids_to_tokens(a[0]) for a in answers]
        raise UserError(f"answer words {answer_words} start with the same token {names[0]!r} under this tokenizer; "
                        "choose words whose first tokens differ")
    fmt.answer_ids = (answers[0], answers[1])
    return fmt


def set_padding(tokenizer) -> None:
    """A padding token distinct from EOS: with pad == EOS, masking padding would also mask the EOS the model must
    learn to emit. Mistral's tokenizer has none; its <unk> serves, else a new <pad> token is added."""
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
