"""Report tower: LoRA on tiny random Llama/BERT models, padding sides, offline MiniLM and SmolLM2."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medclr.models.config import MedclrConfigError
from medclr.models.encoders import report
from medclr.models.encoders.report import LoraSettings, TextConfig

TEXTS = ["No acute cardiopulmonary process.", "Sinus rhythm.", "Mild cardiomegaly with small bilateral effusions."]


def _trainable(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]


def test_lora_on_tiny_llama_trains_only_adapters(tiny_llama_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="medclr.models.encoders.report"):
        enc = TextConfig(model=str(tiny_llama_dir), pooling="last_token", lora=LoraSettings(r=2)).build()
    names = _trainable(enc)
    assert names and all("lora_" in n for n in names)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}  # the llama row of LORA_TARGETS
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert trainable / sum(p.numel() for p in enc.parameters()) < 0.05
    assert "parameters trainable" in caplog.text and "(llama)" in caplog.text
    out = enc(enc.prepare(TEXTS))
    assert out.pooled.shape == (3, 32) and out.tokens.shape[:2] == out.token_mask.shape
    assert out.grid == (out.tokens.shape[1],) and out.pooled.dtype == torch.float32


def test_lora_on_the_top_blocks_only(tiny_llama_dir: Path) -> None:
    enc = TextConfig(model=str(tiny_llama_dir), pooling="last_token", lora=LoraSettings(r=2, layers=(1,))).build()
    blocks = {n.split("layers.")[1].split(".")[0] for n in _trainable(enc)}
    assert blocks == {"1"}  # block 0 keeps no adapter
    enc(enc.prepare(TEXTS)).pooled.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_decoder_pads_with_eos_and_records_it(tiny_llama_dir: Path) -> None:
    enc = TextConfig(model=str(tiny_llama_dir), pooling="last_token", append_eos=True).build()
    info = enc.tokenizer_info()
    assert info["pad_token"] == info["eos_token"] == "</s>" and info["padding_side"] in ("left", "right")
    batch = enc.tokenize(["Sinus rhythm.", "Mild cardiomegaly with small bilateral effusions " * 40])
    assert batch.input_ids.shape[1] == 128  # truncated at max_length, EOS still last
    for ids, mask in zip(batch.input_ids, batch.attention_mask, strict=True):
        assert ids[mask.bool()][-1].item() == enc.tokenizer.eos_token_id


@pytest.mark.parametrize("pooling", ["last_token", "mean", "cls"])
def test_left_and_right_padding_embed_alike(tiny_llama_dir: Path, pooling: str) -> None:
    enc = TextConfig(model=str(tiny_llama_dir), pooling=pooling).build().eval()
    sides = {}
    for side in ("left", "right"):
        enc.tokenizer.padding_side = side
        batch = enc.tokenize(TEXTS)
        assert (batch.attention_mask[:, 0 if side == "left" else -1] == 0).any()  # really padded on that side
        with torch.no_grad():
            sides[side] = enc(batch).pooled
    torch.testing.assert_close(sides["left"], sides["right"], atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # and each text alone (no padding at all) agrees too
        alone = torch.cat([enc(enc.tokenize([t])).pooled for t in TEXTS])
    torch.testing.assert_close(alone, sides["right"], atol=1e-5, rtol=1e-4)


def test_bert_defaults_and_freezing(tiny_bert_dir: Path) -> None:
    enc = TextConfig(model=str(tiny_bert_dir), pooling="cls", lora=LoraSettings(r=2, bias="lora_only")).build()
    names = _trainable(enc)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names if "lora_" in n} == {"query", "value"}
    assert all("lora_" in n or n.endswith(("query.base_layer.bias", "value.base_layer.bias")) for n in names)
    frozen = TextConfig(model=str(tiny_bert_dir)).build()
    assert not _trainable(frozen)
    full = TextConfig(model=str(tiny_bert_dir), train_base=True).build()
    assert len(_trainable(full)) == len(list(full.parameters()))


def test_base_dropout_sets_every_dropout_of_the_base_model(tiny_bert_dir: Path, tiny_llama_dir: Path) -> None:
    def dropouts(enc: torch.nn.Module) -> set[float]:
        return {m.p for n, m in enc.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_" not in n}

    lora = LoraSettings(r=2, dropout=0.05, layers=(1,))
    kept = TextConfig(model=str(tiny_bert_dir), lora=lora).build()
    assert dropouts(kept) == {0.1}  # the tiny BERT's own hidden and attention dropout
    off = TextConfig(model=str(tiny_bert_dir), lora=lora, base_dropout=0.0).build().train()
    assert dropouts(off) == {0.0}
    assert off.model.config.attention_probs_dropout_prob == off.model.config.hidden_dropout_prob == 0.0
    assert {m.p for n, m in off.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_" in n} == {0.05}
    batch = off.prepare(TEXTS)
    assert torch.equal(off(batch).pooled, off(batch).pooled)  # in train mode: no noise left
    llama = TextConfig(model=str(tiny_llama_dir), base_dropout=0.2).build()
    assert llama.model.config.attention_dropout == 0.2
    with pytest.raises(MedclrConfigError, match=r"base_dropout: 1.5 is not a probability"):
        TextConfig(model=str(tiny_bert_dir), base_dropout=1.5).build()


def test_word_tokens_leave_special_tokens_and_punctuation_out_of_the_local_term(tiny_bert_dir: Path) -> None:
    texts = ["Small left pleural effusion.", "..."]
    every = TextConfig(model=str(tiny_bert_dir)).build()
    words = TextConfig(model=str(tiny_bert_dir), word_tokens="words").build()
    batch = words.prepare(texts)
    pieces = [words.tokenizer.convert_ids_to_tokens(row) for row in batch.input_ids.tolist()]
    kept = words(batch).token_mask
    assert torch.equal(every(batch).token_mask, batch.attention_mask.bool())
    assert [p for p, k in zip(pieces[0], kept[0].tolist(), strict=True) if k] == [
        p for p in pieces[0] if p not in ("[CLS]", "[SEP]", "[PAD]", ".")]
    assert kept[0].sum() >= 4 and not kept[0, 0]  # the words, not [CLS]
    assert torch.equal(kept[1], batch.attention_mask[1].bool())  # no word at all: every real token stays
    assert torch.equal(words(batch).pooled, every(batch).pooled)  # pooling still reads every real token


def test_gradient_checkpointing_backward(tiny_llama_dir: Path) -> None:
    enc = TextConfig(model=str(tiny_llama_dir), pooling="last_token", gradient_checkpointing=True,
                     lora=LoraSettings(r=2, dropout=0.0)).build().train()
    enc(enc.prepare(TEXTS)).pooled.sum().backward()
    grads = [p.grad for n, p in enc.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_clear_errors(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(report.LORA_TARGETS, "llama")
    with pytest.raises(MedclrConfigError, match="no default LoRA target modules for model_type 'llama'"):
        TextConfig(model=str(tiny_llama_dir), lora=LoraSettings()).build()
    TextConfig(model=str(tiny_llama_dir), lora=LoraSettings(target_modules=("q_proj",))).build()  # explicit: fine
    with pytest.raises(MedclrConfigError, match=r"LoRA adapts nothing.*blocks, numbered from 0"):
        TextConfig(model=str(tiny_llama_dir), lora=LoraSettings(target_modules=("q_proj",), layers=(99,))).build()
    with pytest.raises(MedclrConfigError, match="valid names: all-minilm-l6-v2, smollm2-135m-instruct"):
        TextConfig(model="offline:gpt-9").build()
    with pytest.raises(MedclrConfigError, match="cannot load text model"):
        TextConfig(model=str(tiny_llama_dir / "absent")).build()
    with pytest.raises(MedclrConfigError, match="valid names: cls, last_token, mean"):
        TextConfig(model=str(tiny_llama_dir), pooling="max").build()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_quantization_needs_cuda(tiny_llama_dir: Path) -> None:
    with pytest.raises(MedclrConfigError, match="needs a CUDA GPU"):
        TextConfig(model=str(tiny_llama_dir), quantization="4bit").build()


def test_minilm_loads_offline_and_embeds_meaningfully() -> None:
    start = time.perf_counter()
    enc = TextConfig(model="offline:all-minilm-l6-v2", pooling="mean").build().eval()
    with torch.no_grad():
        emb = F.normalize(enc(enc.prepare(["The heart is enlarged.", "Cardiomegaly.", "He likes football."])).pooled)
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # pretrained weights, not random ones
    assert time.perf_counter() - start < 30


@pytest.mark.slow
def test_smollm2_gguf_converts_once_and_runs_with_lora(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from medclr.models.encoders.offline import smollm2_gguf, smollm2_hf_folder

    folder = smollm2_hf_folder(tmp_path)
    stamp = (folder / "model.safetensors").stat().st_mtime
    start = time.perf_counter()
    assert smollm2_hf_folder(tmp_path) == folder and (folder / "model.safetensors").stat().st_mtime == stamp
    assert time.perf_counter() - start < 1.0  # reused, not converted again
    gguf = smollm2_gguf()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    enc = TextConfig(model="offline:smollm2-135m-instruct", cache_dir=str(tmp_path), pooling="last_token",
                     append_eos=True, lora=LoraSettings(r=4)).build().eval()
    base = enc.model.get_base_model()  # type: ignore[operator]
    torch.testing.assert_close(base.layers[3].mlp.up_proj.weight, direct.model.layers[3].mlp.up_proj.weight)
    with torch.no_grad():
        out = enc(enc.prepare(TEXTS))
    assert out.pooled.shape == (3, 576) and torch.isfinite(out.pooled).all()
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert 0 < trainable / sum(p.numel() for p in enc.parameters()) < 0.01


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_prefix_cache_matches_the_full_forward(fixture: str, request: pytest.FixtureRequest) -> None:
    """Cached rows (any batch, any padding) give the same states and LoRA gradients as the uncached tower."""
    folder = request.getfixturevalue(fixture)
    torch.manual_seed(0)
    enc = TextConfig(model=str(folder), pooling="mean", prefix_cache=8,
                     lora=LoraSettings(r=2, layers=(1,))).build().eval()
    for name, p in enc.named_parameters():  # B = 0 at the start: give the adapters an effect to compare
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    cache = enc.prefix_cache
    assert cache is not None and cache.first == 1

    def states_and_grads(texts: list[str], cached: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        enc.prefix_cache = cache if cached else None
        enc.zero_grad()
        out = enc(enc.prepare(texts))
        (out.pooled ** 2).sum().backward()
        grads = [p.grad.clone() for p in enc.parameters() if p.requires_grad]
        return out.tokens[out.token_mask], grads

    reference = states_and_grads(TEXTS, cached=False)
    first = states_and_grads(TEXTS, cached=True)  # all misses
    assert (cache.misses, cache.hits) == (3, 0)
    again = states_and_grads(TEXTS, cached=True)  # all hits
    assert (cache.misses, cache.hits) == (3, 3)
    for got in (first, again):
        torch.testing.assert_close(got[0], reference[0], atol=1e-5, rtol=1e-4)
        for g, r in zip(got[1], reference[1], strict=True):
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
    # a cached text padded differently, next to a new text; then a bound of 8 texts, least recently used out
    mixed, _ = states_and_grads([TEXTS[1], "Small left pleural effusion with basal atelectasis today."], cached=True)
    alone, _ = states_and_grads([TEXTS[1]], cached=False)
    n_short = int(enc.prepare([TEXTS[1]]).attention_mask.sum())
    torch.testing.assert_close(mixed[:n_short], alone, atol=1e-5, rtol=1e-4)
    states_and_grads([f"Finding number {i}." for i in range(10)], cached=True)
    assert len(cache.entries) == 8


def test_prefix_cache_in_training_mode_keeps_modes_and_trains(tiny_bert_dir: Path) -> None:
    enc = TextConfig(model=str(tiny_bert_dir), prefix_cache=4, lora=LoraSettings(r=2, layers=(1,))).build().train()
    for _ in range(2):
        enc(enc.prepare(TEXTS)).pooled.sum().backward()
    assert all(m.training for m in enc.modules())  # the prefix ran in eval mode, then the modes came back
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert enc.prefix_cache is not None and enc.prefix_cache.hits == 3


@pytest.mark.parametrize("lora", [LoraSettings(r=2), LoraSettings(r=2, layers=(1,), bias="all")])
def test_prefix_cache_needs_frozen_lower_blocks(tiny_bert_dir: Path, lora: LoraSettings) -> None:
    with pytest.raises(MedclrConfigError, match="prefix_cache: nothing frozen to cache"):
        TextConfig(model=str(tiny_bert_dir), prefix_cache=4, lora=lora).build()


def test_prefix_cache_of_a_frozen_tower_skips_the_model(tiny_llama_dir: Path) -> None:
    enc = TextConfig(model=str(tiny_llama_dir), pooling="last_token", prefix_cache=8).build().eval()
    cache = enc.prefix_cache
    assert cache is not None and cache.whole
    batch = enc.prepare(TEXTS)
    enc.prefix_cache = None
    reference = enc(batch)
    enc.prefix_cache = cache
    calls: list[int] = []
    enc.model.register_forward_pre_hook(lambda *_: calls.append(1))
    first, again = enc(batch), enc(batch)
    assert len(calls) == 1 and (cache.misses, cache.hits) == (3, 3)  # the second batch never ran the model
    for out in (first, again):
        torch.testing.assert_close(out.pooled, reference.pooled, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.tokens[out.token_mask], reference.tokens[reference.token_mask],
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_dir, side", [("tiny_bert_dir", "right"), ("tiny_llama_dir", "left")])
def test_sentence_tokens_are_the_mean_state_of_each_sentence(model_dir: str, side: str,
                                                            request: pytest.FixtureRequest) -> None:
    folder = str(request.getfixturevalue(model_dir))
    texts = ["Mild cardiomegaly. No pleural effusion or pneumothorax.", "Normal chest.", ""]
    per_token = TextConfig(model=folder, padding_side=side).build().eval()
    per_sentence = TextConfig(model=folder, padding_side=side, token_units="sentences").build().eval()
    batch = per_sentence.prepare(texts)
    assert batch.sentence_ids is not None and per_token.prepare(texts).sentence_ids is None
    tokens, sentences = per_token(batch), per_sentence(batch)
    assert torch.equal(sentences.pooled, tokens.pooled)  # the pooled vector reads every token either way
    assert sentences.grid == (2,) and sentences.grid_axes == ("sentence",)
    assert sentences.token_mask.tolist() == [[True, True], [True, False], [True, False]]
    for row, text in enumerate(texts):
        spans = batch.sentence_ids[row]
        pieces = per_sentence.tokenizer.convert_ids_to_tokens(batch.input_ids[row][spans == 0].tolist())
        if text:  # the first sentence's tokens spell it, without special tokens or the second sentence
            assert "".join(pieces).replace("#", "").replace("Ġ", "").replace("▁", "").lower() == \
                text.split(". ")[0].replace(" ", "").lower() + ("." if ". " in text else "")
        for s in range(int(spans.max()) + 1):  # each sentence token = the mean of its token states
            expected = tokens.tokens[row][spans == s].mean(dim=0)
            torch.testing.assert_close(sentences.tokens[row, s], expected)
    assert batch.sentence_ids[2].ge(0).sum() == batch.attention_mask[2].sum()  # an empty text: one sentence


def test_sentence_tokens_need_sentence_ids_and_a_fast_tokenizer(tiny_bert_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    enc = TextConfig(model=str(tiny_bert_dir), token_units="sentences").build()
    plain = TextConfig(model=str(tiny_bert_dir)).build().tokenize(TEXTS)
    with pytest.raises(ValueError, match=r"token_units: sentences needs TokenizedText\.sentence_ids"):
        enc(plain)
    words = TextConfig(model=str(tiny_bert_dir), token_units="sentences", word_tokens="words").build()
    batch = words.prepare(["Small left effusion."])
    assert words(batch).token_mask.tolist() == [[True]]
    assert torch.equal(words._sentences(batch) >= 0, words._words(batch))  # punctuation left out of the mean
    from transformers import PreTrainedTokenizerFast

    monkeypatch.setattr(PreTrainedTokenizerFast, "is_fast", property(lambda self: False))
    with pytest.raises(MedclrConfigError, match="needs a fast tokenizer"):
        TextConfig(model=str(tiny_bert_dir), token_units="sentences").build()
