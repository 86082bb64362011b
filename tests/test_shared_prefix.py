"""The shared-prefix forward equals the plain one: log-probs, loss and every gradient."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.utils import add_fused_lm_head

from rulewise.training.shared_prefix import MIN_SHARED, enable_shared_prefix, shared_prefix_length

VOCAB = 97


def llama():
    from conftest import build_tiny_model

    return build_tiny_model(VOCAB)


def qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    return Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            tie_word_embeddings=False,
        )
    )


def batch(pad_side: str, prefix: int = 24, suffixes=(9, 15, 5, 12), label_from: int = 3):
    """Rows = shared prefix + own tokens; labels on each row's tokens from ``label_from`` on."""
    generator = torch.Generator().manual_seed(7)
    head = torch.randint(3, VOCAB, (prefix,), generator=generator)
    rows = [torch.cat([head, torch.randint(3, VOCAB, (n,), generator=generator)]) for n in suffixes]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, row in enumerate(rows):
        start = width - len(row) if pad_side == "left" else 0
        ids[i, start : start + len(row)] = row
        mask[i, start : start + len(row)] = 1
        labels[i, start + prefix + label_from : start + len(row)] = row[prefix + label_from :]
    return ids, mask, labels


def run(model, ids, mask, labels):
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("build", [llama, qwen2], ids=["llama", "qwen2"])
@pytest.mark.parametrize("pad_side", ["right", "left"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_shared_prefix_forward_equals_plain(build, pad_side, lora):
    model = build().train()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1", "mean_logits", "log_sum_sq_probs"))
    target = model
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
        )
        target = model.get_base_model()
        for name, param in model.named_parameters():  # LoRA B starts at zero: make its gradient path real
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.1)
    ids, mask, labels = batch(pad_side)
    plain, plain_grads = run(model, ids, mask, labels)
    enable_shared_prefix(target)
    shared, shared_grads = run(model, ids, mask, labels)

    assert target.rulewise_last_shared_prefix == 24  # rows differ from their 25th token on
    assert torch.equal(shared.label_mask, plain.label_mask)
    torch.testing.assert_close(shared.log_probs, plain.log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared.loss, plain.loss, rtol=1e-5, atol=1e-6)
    on = plain.label_mask
    torch.testing.assert_close(shared.entropy[on], plain.entropy[on], rtol=1e-4, atol=1e-5)
    assert torch.equal(shared.is_top1[on].bool(), plain.is_top1[on].bool())
    torch.testing.assert_close(shared.mean_logits[on], plain.mean_logits[on], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shared.log_sum_sq_probs[on], plain.log_sum_sq_probs[on], rtol=1e-4, atol=1e-5)
    assert plain_grads.keys() == shared_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_temperature_divides_the_logits_as_trl_does():
    model = llama()
    add_fused_lm_head(model, temperature=0.7)
    ids, mask, labels = batch("right")
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        enable_shared_prefix(model, temperature=0.7)
        shared = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert model.rulewise_last_shared_prefix > 0
    torch.testing.assert_close(shared.log_probs, plain.log_probs, rtol=1e-5, atol=1e-5)


def test_prefix_length_stops_before_the_first_label_and_at_the_first_difference():
    ids, mask, labels = batch("left", prefix=30, label_from=5)
    assert shared_prefix_length(ids, mask, labels) == 30  # rows differ from their 31st token on
    labels[1, (mask[1] == 1).nonzero()[27]] = 5  # a label on row 1's 28th token: its 27th must be its own
    assert shared_prefix_length(ids, mask, labels) == 26
    ids[2, (mask[2] == 1).nonzero()[20]] = 1  # row 2 differs at its 21st real token
    assert shared_prefix_length(ids, mask, labels) == 20
    assert shared_prefix_length(ids[:1], mask[:1], labels[:1]) == 0  # one row: nothing to share


def test_short_shared_prefix_and_unknown_inputs_take_trls_path():
    model = llama()
    add_fused_lm_head(model)
    enable_shared_prefix(model)
    ids, mask, labels = batch("right", prefix=MIN_SHARED - 5, label_from=0)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        assert model.rulewise_last_shared_prefix == 0
        ids, mask, labels = batch("right")
        model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, position_ids=None)
        assert model.rulewise_last_shared_prefix == 0  # an input the shared path does not model
        assert model(input_ids=ids, attention_mask=mask).logits.shape == (
            *ids.shape,
            VOCAB,
        )  # generation path
