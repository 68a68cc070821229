import subprocess
import sys

import pytest
import torch

from mistral.architecture import MiniMistral, tiny_config, verify
from mistral.architecture_figures import figures, table
from mistral.attention_masks import causal_mask, receptive_field, sliding_window_mask
from tests.conftest import ROOT

TOL = 1e-4


@pytest.fixture(scope="module")
def models():
    from transformers import MistralForCausalLM

    torch.manual_seed(1)
    hf = MistralForCausalLM(tiny_config(window=6)).eval()
    return hf, MiniMistral(hf)


def logits_of(hf, ids):
    with torch.no_grad():
        return hf(ids).logits


def test_masks():
    assert torch.equal(sliding_window_mask(6, None), causal_mask(6))
    m = sliding_window_mask(8, 3)
    assert m[5].tolist() == [False, False, False, True, True, True, False, False]  # i-W+1 .. i
    assert receptive_field(12, 3, 2)[11, 7] and not receptive_field(12, 3, 1)[11, 7]  # 2 layers reach 2(W-1) back


def test_three_modes_match_hugging_face(models):
    hf, mini = models
    ids = torch.randint(0, 97, (1, 40))
    reference = logits_of(hf, ids)
    assert (mini.forward(ids) - reference).abs().max() < TOL
    decoded, _, _ = mini.decode(ids)
    assert (decoded - reference).abs().max() < TOL
    prefilled, cache = mini.prefill(ids[:, :30])
    rest, _, _ = mini.decode(ids[:, 30:], cache, start=30)
    assert (torch.cat([prefilled, rest], 1) - reference).abs().max() < TOL


def test_window_is_exercised(models):
    hf, mini = models
    ids = torch.randint(0, 97, (1, 30))
    assert (mini.forward(ids, window=None) - logits_of(hf, ids)).abs().max() > 100 * TOL


def test_rolling_buffer_stays_constant(models):
    _, mini = models
    _, cache, sizes = mini.decode(torch.randint(0, 97, (1, 3 * mini.window + 2)))
    assert len(set(sizes)) == 1
    assert cache.k.shape[3] == mini.window
    assert sorted(cache.pos[0].tolist()) == list(range(2 * mini.window + 2, 3 * mini.window + 2))  # the last W


@pytest.mark.parametrize("chunk", [4, 5, 7, 11])  # none divides 29; 11 is longer than the window
def test_chunk_sizes_that_do_not_divide_the_prompt(models, chunk):
    hf, mini = models
    ids = torch.randint(0, 97, (2, 29))
    logits, _ = mini.prefill(ids, chunk=chunk)
    assert (logits - logits_of(hf, ids)).abs().max() < TOL


def test_prompt_shorter_than_the_window(models):
    hf, mini = models
    ids = torch.randint(0, 97, (1, 4))
    logits, cache = mini.prefill(ids)
    assert (logits - logits_of(hf, ids)).abs().max() < TOL
    assert (cache.pos[0] >= 0).sum() == 4


def test_verify_command_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "mistral.architecture", "--command", "verify"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout and "full_attention_no_window" in proc.stdout
    assert verify(window=4, length=15, chunks=(4, 6))["ok"]


def test_figures_are_written(tmp_path):
    paths = figures(tmp_path)
    assert {p.name for p in paths} == {"sliding_window.png", "rolling_buffer.png", "chunked_prefill.png"}
    assert all(p.stat().st_size > 10_000 and p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_parameter_table_comes_from_the_configs():
    text = table()
    assert "| n_kv_heads | 8 | 8 |" in text
    assert "| window (sliding_window) | 4,096 | none (full attention) |" in text


def test_docs_table_is_the_generated_one():
    assert table() in (ROOT / "docs" / "mistral.md").read_text()


def test_docs_distilbert_table_is_the_generated_one():
    from distilbert.model import architecture_table

    assert architecture_table() in (ROOT / "docs" / "distilbert.md").read_text()
