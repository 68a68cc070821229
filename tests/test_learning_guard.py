"""The learning guard of the SFT script: judged on gradients, so weight decay cannot hide a tensor with no gradient,
and steps that fp16's GradScaler skips do not count."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from common.config import UserError
from mistral.learning_guard import LearningGuard


class Toy(torch.nn.Module):
    """A linear model and a second weight that stays in the graph; with `dead` it is multiplied by 0, so it gets a
    gradient that exists and is exactly zero (what a 4-bit layer with no backward gave LoRA)."""

    def __init__(self, dead: bool):
        super().__init__()
        torch.manual_seed(0)
        self.live = torch.nn.Linear(4, 1)
        self.extra = torch.nn.Parameter(torch.ones(1, 4))
        self.factor = 0.0 if dead else 1.0

    def forward(self, x, labels):
        out = self.live(x).squeeze(-1) + self.factor * (x @ self.extra.T).squeeze(-1)
        return {"loss": F.mse_loss(out, labels)}


def examples(n=16):
    g = torch.Generator().manual_seed(1)
    return [{"x": torch.randn(4, generator=g), "labels": torch.randn((), generator=g)} for _ in range(n)]


def train_with_guard(model, tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2,
                             weight_decay=0.1, warmup_steps=0, report_to="none", save_strategy="no", use_cpu=True)
    before = model.extra.detach().clone()
    try:
        Trainer(model=model, args=args, train_dataset=examples(), callbacks=[LearningGuard()]).train()
    finally:
        moved = not torch.equal(before, model.extra.detach())
    return moved


def test_zero_gradient_under_weight_decay_stops_the_run(tmp_path):
    model = Toy(dead=True)
    with pytest.raises(UserError, match=r"first 3 optimizer steps 1 of 3 trainable tensors got no finite, nonzero "
                                        r"gradient \(first: extra\)"):
        train_with_guard(model, tmp_path)
    # the trap the guard must not fall into: weight decay moved the tensor that had no gradient
    assert not torch.equal(model.extra.detach(), torch.ones(1, 4))


def test_every_tensor_with_a_gradient_passes(tmp_path):
    train_with_guard(Toy(dead=False), tmp_path)  # no error: the guard is not tripped by a healthy run


def run_steps(model, guard, skipped: int, taken: int):
    """The Trainer's order of calls, with fp16's GradScaler simulated: an overflowing loss scale gives non-finite
    gradients in the first `skipped` steps, and the scaler then skips the optimizer step."""
    args, state = SimpleNamespace(fp16=True), SimpleNamespace(max_steps=skipped + taken, global_step=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    guard.on_train_begin(args, state, None, model=model)
    batch = examples(4)
    x, y = torch.stack([b["x"] for b in batch]), torch.stack([b["labels"] for b in batch])
    for step in range(skipped + taken):
        loss = model(x, y)["loss"]
        (loss * (float("inf") if step < skipped else 1.0)).backward()
        guard.on_pre_optimizer_step(args, state, None, model=model)
        if step >= skipped:
            optimizer.step()
        optimizer.zero_grad()
        state.global_step += 1
        guard.on_step_end(args, state, None, model=model)


def test_steps_the_grad_scaler_skipped_do_not_count():
    run_steps(Toy(dead=False), LearningGuard(), skipped=3, taken=3)  # three skipped first steps: no error


def test_skipped_steps_do_not_hide_a_zero_gradient():
    with pytest.raises(UserError, match="1 of 3 trainable tensors"):
        run_steps(Toy(dead=True), LearningGuard(), skipped=3, taken=3)


def run_from(model, global_step: int, max_steps: int, loss_scale: float = 1.0):
    """The guard over the steps left of a run that starts (or resumes) at global_step, without fp16."""
    guard, args = LearningGuard(), SimpleNamespace(fp16=False)
    state = SimpleNamespace(max_steps=max_steps, global_step=global_step)
    guard.on_train_begin(args, state, None, model=model)
    batch = examples(4)
    x, y = torch.stack([b["x"] for b in batch]), torch.stack([b["labels"] for b in batch])
    while state.global_step < max_steps:
        (loss_scale * model(x, y)["loss"]).backward()
        guard.on_pre_optimizer_step(args, state, None, model=model)
        model.zero_grad()
        state.global_step += 1


def test_a_run_resumed_one_step_before_its_end_is_still_checked():
    """One step left: that step is judged, and a run in which no tensor got any gradient stops."""
    with pytest.raises(UserError, match="in the first 1 optimizer steps 3 of 3 trainable tensors"):
        run_from(Toy(dead=False), global_step=9, max_steps=10, loss_scale=0.0)


def test_a_run_shorter_than_the_guard_fails_only_when_no_tensor_got_a_gradient():
    """With fewer steps than lora_A needs, a tensor still at zero gradient is no proof: only all of them is."""
    run_from(Toy(dead=True), global_step=0, max_steps=1)  # `extra` silent, the linear layer not: no error
    with pytest.raises(UserError, match="1 optimizer steps 3 of 3"):
        run_from(Toy(dead=True), global_step=0, max_steps=1, loss_scale=0.0)
