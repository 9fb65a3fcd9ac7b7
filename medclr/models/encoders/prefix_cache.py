"""Frozen-prefix cache: run a text tower's frozen blocks once per text, not once per epoch.

With LoRA on the top blocks only (``lora.layers``, e.g. [4, 5] of MiniLM's 6), the embeddings and blocks
``0 .. k-1`` below the first adapted block ``k`` never change: the hidden state entering block ``k`` is a fixed
function of a text's token ids, provided those frozen modules run without dropout (as a fully frozen tower already
does, see :func:`medclr.train.parts.set_train_mode`). Training feeds every report once per epoch, so it recomputes
the same ``[L, D]`` states each epoch. :class:`FrozenPrefixCache` keeps them, keyed by the text's real token ids
(least recently used out first), and for a text seen before runs only blocks ``k ..`` forward and backward::

    miss:  ids -> embeddings -> blocks 0..k-1 (eval mode, no grad) -> h_k [L_i, D]  --store-->  cache
    batch: h_k of each row placed at its real tokens [B, L, D] -> blocks k.. (train mode, LoRA grads) -> states

A text tower with nothing trainable (a frozen base, as in ``configs/train/xor.yaml``) already runs without dropout;
there the cache keeps the model's output itself, and a text seen before costs nothing.

Exactness: a row's states do not depend on the padding around it (padded keys are masked; the tower counts
left-padded positions from the first real token), so a cached row equals a fresh one up to float rounding, and
padded positions, which nothing reads (masked keys, masked pooling), start from zeros. What changes with the cache
on is only that the frozen blocks never apply dropout, in training too.

Measured on 2 CPU cores: the demo tower (MiniLM, blocks 4-5 adapted) takes 0.26 s instead of 0.50 s for forward
+ backward of 32 reports seen before (``benchmarks/encoder_bench.py``); ``configs/train/xor.yaml`` (frozen MiniLM)
trains 400 steps in 31 s instead of 243 s, loss for loss the same run. Texts must repeat: sampled report
sentences (``data.augment.report_sentence_keep < 1``) make nearly every text new, and training warns. Memory:
entries x tokens x hidden x 4 bytes (1,500 reports x ~100 tokens x 384 x 4 B = ~230 MB), on the tower's device.

The block list is found as the model's longest ``nn.ModuleList`` (BERT ``encoder.layer``, Llama ``layers``, GPT-2
``h``); the tail ``k ..`` runs by swapping that list for its slice during the call, with a pre-hook on block ``k``
replacing its input: both work for any Hugging Face model whose forward loops over its block list.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from medclr.models.config import MedclrConfigError


def block_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """Dotted name and module of the model's list of transformer blocks: its longest ``nn.ModuleList``."""
    lists = [(len(m), name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return None
    _, name, blocks = max(lists, key=lambda item: item[0])
    return name, blocks


class _PrefixDone(Exception):
    """Raised by the capture hook to stop the forward pass at block k (the tail is not needed for a miss)."""

    def __init__(self, hidden: Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def _replace_hidden(args: tuple[Any, ...], kwargs: dict[str, Any], hidden: Tensor
                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _hidden_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    hidden = args[0] if args else kwargs["hidden_states"]
    assert isinstance(hidden, Tensor)
    return hidden


class FrozenPrefixCache:
    """Cache of the hidden states entering ``model``'s first trainable block, or of its output when nothing in it
    trains (module docstring).

    ``forward(call, kwargs)`` returns what ``call(kwargs)`` (the model's forward on the whole batch, returning the
    last hidden states ``[B, L, D]``) returns, having run the frozen prefix only for rows not yet cached.
    ``max_entries`` bounds the number of texts kept.
    """

    def __init__(self, model: nn.Module, max_entries: int) -> None:
        found = block_list(model)
        if found is None:
            raise MedclrConfigError("prefix_cache: the text model has no list of transformer blocks to split")
        self.model, self.max_entries = model, max_entries
        self.list_name, blocks = found
        trainable = [i for i, block in enumerate(blocks) if any(p.requires_grad for p in block.parameters())]
        self.first = min(trainable, default=len(blocks))
        in_tail = {id(p) for block in list(blocks)[self.first:] for p in block.parameters()}
        outside = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in in_tail]
        self.whole = self.first == len(blocks)  # a frozen model: its output itself is cached
        if self.first == 0 or outside:
            where = f"trainable weights outside blocks {self.first}..: {outside[:3]}" if outside else \
                "block 0 is trained"
            raise MedclrConfigError(f"prefix_cache: nothing frozen to cache ({where}). Fix: adapt only the top "
                                    "blocks (lora.layers, lora.bias: none) or set prefix_cache: 0")
        self.entries: OrderedDict[bytes, Tensor] = OrderedDict()
        self.hits = self.misses = 0

    @property
    def blocks(self) -> nn.ModuleList:
        blocks = self.model.get_submodule(self.list_name)
        assert isinstance(blocks, nn.ModuleList)
        return blocks

    def forward(self, call: Callable[[dict[str, Tensor]], Any], kwargs: dict[str, Tensor]) -> Any:
        """``call(kwargs)`` with blocks ``0 .. k-1`` replaced by cached states (a frozen model: the cached output,
        without a call); ``kwargs`` holds ``input_ids`` and ``attention_mask`` ``[B, L]`` (and any other per-row
        tensors, e.g. ``position_ids``)."""
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"].bool()  # [B, L]
        keys = [ids[i][mask[i]].cpu().numpy().tobytes() for i in range(ids.shape[0])]
        todo: dict[bytes, int] = {}  # uncached text -> its first row
        for i, key in enumerate(keys):
            if key not in self.entries:
                todo.setdefault(key, i)
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        if todo:
            self._compute(call, kwargs, todo)
        rows = [self.entries[key] for key in keys]  # [L_i, D] each
        for key in keys:  # most recently used last
            self.entries.move_to_end(key)
        states = rows[0].new_zeros(*ids.shape, rows[0].shape[-1])  # [B, L, D]
        for i, row in enumerate(rows):
            states[i, mask[i]] = row
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        if self.whole:
            return states
        with self._tail(states):
            return call(kwargs)

    def _compute(self, call: Callable[[dict[str, Tensor]], Any], kwargs: dict[str, Tensor],
                 rows: dict[bytes, int]) -> None:
        """Run the frozen prefix (eval mode, no grad) on the batch ``rows`` (key -> row) and store their states."""
        index = torch.tensor(list(rows.values()), device=kwargs["input_ids"].device)
        sub = {name: value.index_select(0, index) for name, value in kwargs.items()}
        mask = sub["attention_mask"].bool()
        with torch.no_grad(), _eval_mode(self.model):
            hidden = call(sub) if self.whole else self._prefix(call, sub)  # [b, L, D]
        for j, key in enumerate(rows):
            self.entries[key] = hidden[j][mask[j]].clone()  # [L_j, D]

    def _prefix(self, call: Callable[[dict[str, Tensor]], Any], kwargs: dict[str, Tensor]) -> Tensor:
        """The input of block k: the forward pass stopped there by a pre-hook."""
        hook = self.blocks[self.first].register_forward_pre_hook(_capture, with_kwargs=True)
        try:
            call(kwargs)
        except _PrefixDone as done:
            return done.hidden.detach()
        finally:
            hook.remove()
        raise MedclrConfigError(f"prefix_cache: the text model never reached its block {self.first}. Fix: set "
                                "prefix_cache: 0 for this model")

    @contextlib.contextmanager
    def _tail(self, states: Tensor) -> Iterator[None]:
        """Within the block: the model runs blocks ``k ..`` only, block ``k`` taking ``states`` as its input."""
        parent_name, _, attr = self.list_name.rpartition(".")
        parent = self.model.get_submodule(parent_name)
        blocks = self.blocks
        hook = blocks[self.first].register_forward_pre_hook(
            lambda _module, args, kwargs: _replace_hidden(args, kwargs, states), with_kwargs=True)
        setattr(parent, attr, blocks[self.first:])
        try:
            yield
        finally:
            setattr(parent, attr, blocks)
            hook.remove()


def _capture(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    raise _PrefixDone(_hidden_of(args, kwargs))


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)
