"""Report tower: any Hugging Face ``AutoModel`` (BERT-like encoder or Llama-like decoder) with optional LoRA.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) freezes the pretrained weight
``W`` and learns ``W + (alpha / r) B A`` with ``A [r, in]``, ``B [out, r]`` and ``B = 0`` at the start, so training
begins from the pretrained model and touches well under 1% of a large model's parameters. MoRE (X-ray, ECG and
report contrastive pre-training) adapts its LLM report tower this way.

Texts -> :meth:`ReportEncoder.tokenize` -> :class:`TokenizedText` -> ``forward`` -> pooled ``[B, D]`` (``cls``,
``mean`` or ``last_token``; see :mod:`medclr.models.pooling`) and the token states ``[B, L, D]`` with their mask
for grounding. Decoder tokenizers without a pad token pad with EOS; the padding side is the tokenizer's (or the
config's) and is recorded in :meth:`ReportEncoder.tokenizer_info`. Left-padded rows get position ids counted from
their first real token, so a text embeds the same whichever side it was padded on.

``model`` is a hub id (pin ``revision``), a local folder, or ``offline:<name>`` for a model shipped in a package
(:mod:`medclr.models.encoders.offline`). ``trust_remote_code`` is off unless a config turns it on.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from medclr.models.config import MedclrConfigError, doc, knob, register_config
from medclr.models.encoders.base import ENCODERS, Encoder, EncoderConfig
from medclr.models.encoders.offline import OFFLINE_MODELS
from medclr.models.encoders.prefix_cache import FrozenPrefixCache, block_list
from medclr.models.pooling import POOLERS, sentence_pool
from medclr.types import EncoderOutput, ModalityInput, TokenizedText

log = logging.getLogger(__name__)

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
# LoRA target modules per ``config.model_type`` when the config names none (attention projections, as in the
# LoRA paper's recommended W_q, W_v for BERT-style models and all four projections for decoder LLMs).
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"), "roberta": ("query", "value"), "xlm-roberta": ("query", "value"),
    "electra": ("query", "value"), "distilbert": ("q_lin", "v_lin"), "mpnet": ("q", "v"),
    "deberta-v2": ("query_proj", "value_proj"), "modernbert": ("Wqkv",),
    "llama": _ATTN, "mistral": _ATTN, "qwen2": _ATTN, "qwen3": _ATTN, "gemma": _ATTN, "gemma2": _ATTN,
    "gemma3_text": _ATTN, "olmo2": _ATTN, "phi3": ("qkv_proj", "o_proj"),
}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass
class LoraSettings:
    """LoRA adapter settings (Hu et al., 2022); only adapters (and the chosen biases) are trained."""

    r: int = knob(8, "rank of the update B A")
    alpha: int = knob(16, "scale numerator: the update is multiplied by alpha / r")
    dropout: float = knob(0.05, "dropout on the adapter input")
    target_modules: tuple[str, ...] | None = knob(None, "module names to adapt; None = LORA_TARGETS[model_type]")
    bias: Literal["none", "lora_only", "all"] = knob("none", "biases to train: none, those of adapted layers, all")
    layers: tuple[int, ...] | None = knob(
        None, "indices of the transformer blocks to adapt (peft's layers_to_transform); None = all blocks. Adapting "
        "only the top blocks (e.g. [4, 5] of MiniLM's 6) means backward stops there: on CPU a LoRA step on MiniLM "
        "costs ~1.1 s instead of ~2.0 s for 32 reports")


@register_config(ENCODERS, "text_hf")
@dataclasses.dataclass
class TextConfig(EncoderConfig):
    """A Hugging Face text model as report tower."""

    model: str = knob("offline:all-minilm-l6-v2", "hub id, local folder, or offline:<name> (packaged weights)")
    revision: str | None = knob(None, "hub revision (commit hash or tag) to pin; ignored for local folders")
    trust_remote_code: bool = knob(False, "run code shipped with the model (only for models you trust)")
    pooling: str = knob("mean", "cls | mean | last_token (last_token for decoder LLMs)")
    max_length: int = knob(128, "tokens per text after truncation")
    lora: LoraSettings | None = dataclasses.field(
        default=None, metadata=doc("LoRA adapters; None = no adapters (see train_base)"))
    train_base: bool = knob(False, "without LoRA: train all weights (true) or keep the model frozen (false)")
    gradient_checkpointing: bool = knob(False, "recompute activations in backward (saves memory on long texts)")
    quantization: Literal["none", "8bit", "4bit"] = knob("none", "load the frozen base in 8/4 bit (CUDA only)")
    dtype: Literal["float32", "bfloat16", "float16"] = knob("float32", "weight dtype of the base model")
    base_dropout: float | None = knob(
        None, "dropout of the base model: every dropout probability in its config (*dropout*, *pdrop*) set to this; "
        "None keeps the model's own (MiniLM: 0.1). 0 with LoRA on the top blocks only: no noise in the frozen "
        "blocks, and attention on the CPU takes its fused kernel (attention dropout forces the unfused one)")
    word_tokens: Literal["all", "words"] = knob(
        "all", "which tokens the local word-region term (loss.kwargs.local_weight) treats as words: all = every "
        "real token, special tokens and punctuation included; words = those holding a letter or digit that are not "
        "special tokens ([CLS], [SEP], EOS), as GLoRIA feeds its local loss (Huang et al., 2021)")
    token_units: Literal["tokens", "sentences"] = knob(
        "tokens", "what the tower's tokens (its grid for the local term and text-side maps) are: tokens = the model's "
        "token states; sentences = the mean state of each report sentence (LoVT's sentence-level report features, "
        "Mueller et al., ECCV 2022), so the local term matches regions to whole findings such as 'No pleural "
        "effusion.' (negation kept) the way a grounding phrase is matched; needs a fast tokenizer. On "
        "the demo world it lowered the pointing game over two seeds (README, Results)")
    padding_side: Literal["tokenizer", "left", "right"] = knob("tokenizer", "pad side; 'tokenizer' keeps its own")
    append_eos: bool = knob(False, "append the EOS token to each text (common with last_token pooling)")
    cache_dir: str | None = knob(None, "where offline models are converted; default $MEDCLR_CACHE or ~/.cache/medclr")
    prefix_cache: int = knob(
        0, "texts whose frozen lower-block states are kept (0 = off): with LoRA on the top blocks only, a text seen "
        "before runs only the adapted blocks (frozen blocks then run without dropout); with a frozen model, not at "
        "all. Costs texts x tokens x hidden x 4 bytes. See medclr.models.encoders.prefix_cache")

    def build(self) -> Encoder:
        return self.finish(ReportEncoder(self))


def resolve_model(model: str, cache_dir: str | None = None) -> str:
    """``offline:<name>`` -> its local folder; anything else (hub id or folder) unchanged."""
    if model.startswith("offline:"):
        try:
            factory = OFFLINE_MODELS.get(model.removeprefix("offline:"))
        except KeyError as err:
            raise MedclrConfigError(f"model '{model}': {err.args[0]}") from None
        return str(factory(Path(cache_dir) if cache_dir else None))
    return model


class ReportEncoder(Encoder):
    """Tokenizer + ``AutoModel`` (+ LoRA); ``forward(TokenizedText) -> EncoderOutput`` in float32."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        self.cfg = cfg
        try:
            self.pool = POOLERS.get(cfg.pooling)
        except KeyError as err:
            raise MedclrConfigError(f"text encoder pooling: {err.args[0]}") from None
        source = resolve_model(cfg.model, cfg.cache_dir)
        common: dict[str, Any] = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **common)
            model: Any = _load_model(source, cfg, common)
        except OSError as err:
            raise MedclrConfigError(
                f"cannot load text model '{cfg.model}' ({str(err).splitlines()[0][:200]}). Fix: use a local folder, "
                f"or offline:<name> with one of: {', '.join(OFFLINE_MODELS.names())}"
            ) from None
        self._fix_tokenizer()
        self._word_like = _word_like(self.tokenizer) if cfg.word_tokens == "words" else None  # [vocab] bool
        if cfg.token_units == "sentences" and not self.tokenizer.is_fast:
            raise MedclrConfigError(f"token_units: sentences needs a fast tokenizer (character offsets); "
                                    f"'{cfg.model}' has a slow one. Fix: token_units: tokens")
        self.model_type = str(model.config.model_type)
        self.out_dim = int(model.config.hidden_size)
        if cfg.gradient_checkpointing:  # transformers >= 5.x renamed it; older versions have only the first name
            enable = getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)
            enable({"use_reentrant": False})  # the checkpoint kwargs, positional: the keyword's name changed too
        self.model: nn.Module = _adapt(model, cfg, self.model_type)
        self._takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters
        self.prefix_cache = FrozenPrefixCache(self.model, cfg.prefix_cache) if cfg.prefix_cache > 0 else None
        trainable, total = _count(self.model)
        log.info("report tower %s (%s): %d of %d parameters trainable (%.3f%%)", cfg.model, self.model_type,
                 trainable, total, 100.0 * trainable / max(total, 1))

    def _fix_tokenizer(self) -> None:
        tok = self.tokenizer
        if tok.pad_token is None:
            if tok.eos_token is None:
                raise MedclrConfigError(f"tokenizer of '{self.cfg.model}' has neither a pad nor an EOS token")
            tok.pad_token = tok.eos_token  # decoders: pad with EOS; the mask hides it
        if self.cfg.padding_side != "tokenizer":
            tok.padding_side = self.cfg.padding_side

    def tokenizer_info(self) -> dict[str, Any]:
        """Tokenizer settings a run directory records (for identical tokenization at inference)."""
        tok = self.tokenizer
        return {"model": self.cfg.model, "revision": self.cfg.revision, "padding_side": tok.padding_side,
                "pad_token": tok.pad_token, "eos_token": tok.eos_token, "max_length": self.cfg.max_length,
                "append_eos": self.cfg.append_eos, "pooling": self.cfg.pooling}

    def tokenize(self, texts: list[str]) -> TokenizedText:
        """Pad to the longest text (truncating at ``max_length``, EOS kept when appended): ids and mask ``[B, L]``
        (and each token's sentence with ``token_units: sentences``); the DataLoader's tokenizer, exactly."""
        from medclr.data.collate import ReportTokenizer

        return ReportTokenizer.from_encoder(self)(texts)

    def prepare(self, x: ModalityInput) -> ModalityInput:
        if isinstance(x, list):
            return self.tokenize(x)
        if not isinstance(x, TokenizedText):
            raise TypeError(f"the report tower takes a list of strings or TokenizedText, got {type(x).__name__}")
        return x

    def forward(self, x: TokenizedText) -> EncoderOutput:
        mask = x.attention_mask  # [B, L]
        kwargs: dict[str, Tensor] = {"input_ids": x.input_ids, "attention_mask": mask}
        if self._takes_position_ids and bool((mask[:, 0] == 0).any()):  # left padding: count from the first token
            kwargs["position_ids"] = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
        hidden = (self.prefix_cache.forward(self._run, kwargs) if self.prefix_cache else self._run(kwargs)).float()
        pooled = self.pool(hidden, mask)  # hidden [B, L, D] -> [B, D]
        if self.cfg.token_units == "sentences":
            sentences, kept = sentence_pool(hidden, self._sentences(x))  # [B, S, D], [B, S]
            return EncoderOutput(pooled=pooled, tokens=sentences, token_mask=kept, grid=(sentences.shape[1],),
                                 grid_axes=("sentence",))
        return EncoderOutput(pooled=pooled, tokens=hidden, token_mask=self._words(x), grid=(hidden.shape[1],),
                             grid_axes=("token",))

    def _sentences(self, x: TokenizedText) -> Tensor:
        """``[B, L]``: each token's sentence, -1 for tokens outside the sentence means (and, with ``word_tokens:
        words``, for punctuation, unless a sentence would lose every token)."""
        if x.sentence_ids is None:
            raise ValueError("token_units: sentences needs TokenizedText.sentence_ids; tokenize with this tower's "
                             "tokenize() or medclr.data.collate.ReportTokenizer.from_encoder(tower)")
        if self._word_like is None:
            return x.sentence_ids
        words = self._word_like.to(x.input_ids.device)[x.input_ids]  # [B, L]
        return torch.where(words, x.sentence_ids, -1)

    def _words(self, x: TokenizedText) -> Tensor:
        """``[B, L]`` bool: the tokens the local term reads as words (``word_tokens``); a text with no word-like
        token keeps all its real tokens (the local term needs at least one)."""
        real = x.attention_mask.bool()
        if self._word_like is None:
            return real
        words = real & self._word_like.to(x.input_ids.device)[x.input_ids]
        return torch.where(words.any(dim=1, keepdim=True), words, real)

    def _run(self, kwargs: dict[str, Tensor]) -> Tensor:
        return self.model(**kwargs).last_hidden_state


def _word_like(tokenizer: Any) -> Tensor:
    """``[vocab]`` bool: True for the tokens holding a letter or digit that are not special tokens (``"effusion"``,
    ``"##al"``, ``"Ġleft"``; not ``"[CLS]"``, ``"."``, ``","``)."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i not in special and any(c.isalnum() for c in str(p)) for i, p in enumerate(pieces)])


def _load_model(source: str, cfg: TextConfig, common: dict[str, Any]) -> nn.Module:
    from transformers import AutoModel

    extra: dict[str, Any] = {"dtype": _DTYPES[cfg.dtype]}
    if cfg.base_dropout is not None:
        extra["config"] = _with_dropout(source, common, cfg.base_dropout)
    if cfg.quantization != "none":
        extra.update(_quantization(cfg))
    model: nn.Module = AutoModel.from_pretrained(source, **common, **extra)
    if cfg.quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def _with_dropout(source: str, common: dict[str, Any], p: float) -> Any:
    """The model's config with every dropout probability (BERT's ``hidden_dropout_prob`` and
    ``attention_probs_dropout_prob``, Llama's ``attention_dropout``, GPT-2's ``*_pdrop``...) set to ``p``."""
    from transformers import AutoConfig

    if not 0.0 <= p < 1.0:
        raise MedclrConfigError(f"base_dropout: {p} is not a probability in [0, 1)")
    config = AutoConfig.from_pretrained(source, **common)
    for name, value in config.to_dict().items():
        if isinstance(value, float) and ("dropout" in name or "pdrop" in name):
            setattr(config, name, p)
    return config


def _quantization(cfg: TextConfig) -> dict[str, Any]:
    """bitsandbytes 8/4-bit loading; only on CUDA, with a clear message elsewhere."""
    if not torch.cuda.is_available():
        raise MedclrConfigError(f"quantization '{cfg.quantization}' needs a CUDA GPU (bitsandbytes); none here. "
                                "Fix: set quantization: none on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MedclrConfigError("8/4-bit loading needs bitsandbytes. Fix: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_8bit=cfg.quantization == "8bit", load_in_4bit=cfg.quantization == "4bit",
                             bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    return {"quantization_config": bnb, "device_map": {"": torch.cuda.current_device()}}


def _adapt(model: nn.Module, cfg: TextConfig, model_type: str) -> nn.Module:
    """Wrap with LoRA (only adapters and chosen biases trainable), or freeze / unfreeze the whole model."""
    if cfg.lora is None:
        model.requires_grad_(cfg.train_base)
        return model
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora.target_modules or LORA_TARGETS.get(model_type)
    if not targets:
        raise MedclrConfigError(f"no default LoRA target modules for model_type '{model_type}'. Fix: set "
                                f"lora.target_modules (known defaults: {', '.join(sorted(LORA_TARGETS))})")
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(targets), bias=cfg.lora.bias,
                      layers_to_transform=list(cfg.lora.layers) if cfg.lora.layers is not None else None,
                      layers_pattern=_block_list_name(model) if cfg.lora.layers is not None else None)
    try:
        return get_peft_model(model, lora)
    except ValueError as err:  # peft: no module matched the targets (and layers)
        n_layers = getattr(model.config, "num_hidden_layers", "?")
        raise MedclrConfigError(f"LoRA adapts nothing: {str(err).splitlines()[0][:300]} (the model has {n_layers} "
                                "blocks, numbered from 0). Fix: lora.target_modules / lora.layers") from None


def _block_list_name(model: nn.Module) -> str | None:
    """Attribute name of the model's list of transformer blocks (BERT ``layer``, Llama ``layers``, GPT-2 ``h``).
    peft needs it to number blocks when the list sits at the model's root."""
    found = block_list(model)
    return found[0].rsplit(".", 1)[-1] if found else None


def _count(module: nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
