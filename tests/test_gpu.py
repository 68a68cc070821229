"""CUDA paths (marker gpu; skipped without CUDA). The loop's bf16 and fp16 runs with resume are in
test_distilbert_loop.py (test_resume_matches_uninterrupted[cuda-*]); `make gpu-check` runs all of them."""
import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory):
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    return save_tiny_mistral(tmp_path_factory.mktemp("tiny_mistral"), chat_template=CHAT_TEMPLATE)


def test_4bit_nf4_lora_takes_paged_adamw_steps_on_cuda(tiny_mistral):
    import bitsandbytes as bnb

    from mistral.model import add_lora, load_base

    model, _ = load_base(str(tiny_mistral), load_in_4bit=True)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit) and q_proj.weight.device.type == "cuda"
    assert q_proj.weight.quant_type == "nf4"
    model = add_lora(model, r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"], quantized=True)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    optimizer = bnb.optim.PagedAdamW32bit(list(params.values()), lr=1e-2)
    ids = torch.randint(3, model.config.vocab_size, (2, 48), device="cuda")
    model.train()
    for _ in range(2):  # lora_A moves once lora_B is no longer zero
        loss = model(input_ids=ids, labels=ids).loss
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    unchanged = [n for n, p in params.items() if torch.equal(p.detach(), before[n])]
    assert not unchanged and len(params) == 8  # 2 layers x (q, v) x (A, B)


def test_label_scoring_on_cuda_equals_cpu(tiny_mistral):
    """The same fp32 model scored on both devices: margins within 1e-4 (TF32 off), the same labels wherever the
    margin is not a near-tie."""
    from fixtures.synthetic import make_imdb
    from mistral.evaluate import score_margins
    from mistral.model import load_base
    from mistral.prompts import PromptArguments, make_format

    reviews = make_imdb(n_train=64, n_test=0, n_dup=0)["train"]["text"].tolist()
    model, tokenizer = load_base(str(tiny_mistral), load_in_4bit=False, precision="fp32")
    fmt = make_format(tokenizer, PromptArguments(), 128)
    torch.backends.cuda.matmul.allow_tf32 = False
    on_cuda = score_margins(model.to("cuda"), fmt, reviews, batch_size=8)
    on_cpu = score_margins(model.to("cpu"), fmt, reviews, batch_size=8)
    assert max(abs(a - b) for a, b in zip(on_cuda, on_cpu)) < 1e-4
    assert all((a > 0) == (b > 0) for a, b in zip(on_cuda, on_cpu) if abs(b) > 1e-3)


def test_trainer_and_loop_pick_the_same_precision(tmp_path):
    from accelerate import Accelerator
    from transformers import TrainingArguments

    from common.precision import accelerate_mixed_precision, resolve_precision
    from distilbert.model import CausalLMArguments
    from distilbert.train_trainer import build_args

    args, _ = build_args(CausalLMArguments(), TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    trainer = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
    loop = Accelerator(mixed_precision=accelerate_mixed_precision(resolve_precision("auto")[0])).mixed_precision
    # native bf16 arrived with compute capability 8.0 (Ampere); older cards (T4, V100) emulate it: fp16 there
    expected = "bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp16"
    assert trainer == loop == expected
