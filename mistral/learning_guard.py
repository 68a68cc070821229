"""The check that a QLoRA run is learning: every trainable tensor gets a gradient (mistral/train_sft.py uses it)."""
from __future__ import annotations

import torch
from transformers import TrainerCallback

from common.config import UserError


class LearningGuard(TrainerCallback):
    """Stops the run, with no results written, when a trainable tensor gets no gradient: a "tuned" accuracy would
    report a model that did not learn. Every trainable tensor must get a finite, nonzero gradient in at least one of
    the first STEPS optimizer steps actually taken. Judged on the gradients before each step (after backward and
    clipping, before zero_grad), not on whether weights moved: AdamW's decoupled weight decay moves a tensor whose
    gradient is zero. Under fp16 a step with a non-finite gradient is one the GradScaler skips, so it does not count."""

    STEPS = 3  # lr is 0 at the first warm-up step; lora_B moves at the next; lora_A's gradient is 0 until B is not

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.steps = 0
        self.silent = {n for n, p in model.named_parameters() if p.requires_grad}  # no nonzero gradient yet
        self.total = len(self.silent)
        self.check_at = min(self.STEPS, max(state.max_steps - state.global_step, 1))

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.silent is None:
            return
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.requires_grad]
        finite = {n for n, g in grads if g is not None and bool(torch.isfinite(g).all())}
        if args.fp16 and len(finite) < sum(g is not None for _, g in grads):
            return  # the GradScaler skips this step
        self.steps += 1
        self.silent -= {n for n, g in grads if n in finite and bool(g.count_nonzero())}
        if self.steps < self.check_at:
            return
        # with fewer steps than lora_A needs, only "no gradient at all" proves there was none
        if self.silent and (self.check_at == self.STEPS or len(self.silent) == self.total):
            raise UserError(f"training is not learning: in the first {self.steps} optimizer steps {len(self.silent)} "
                            f"of {self.total} trainable tensors got no finite, nonzero gradient (first: "
                            f"{sorted(self.silent)[0]}); no results written")
        self.silent = None  # checked once
