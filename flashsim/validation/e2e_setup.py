"""What an end-to-end run decodes: the prompt (cut to its tokens), one layout object per row
(layout × QD: the merge gap is resolved at the row's QD, as `simulate` resolves it), and
the store each layout reads (one per placement in the store folder; `build_stores` builds
the missing ones)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..device import load_params
from ..device.gap import GapChoice, resolve_merge_gap
from ..errors import InputError
from ..layout.base import Layout
from ..layout.registry import make_layout
from ..loader.store import WeightStore, store_for
from ..model.checkpoint import Checkpoint, load_checkpoint
from ..model.tokenizer import load_tokenizer, prompt_ids
from ..trace.format import ActivationTrace
from .e2e_spec import EndToEndSpec
from .schedule import RowKey
from .stores import store_folder

DEFAULT_BLOCK_BYTES = 4096
"""Read alignment when the spec gives none: the layouts' own default."""


@dataclass(frozen=True)
class EndToEndSetup:
    """Row (i, q) decodes layout `names[i]` at QD q with `layouts[(i, q)]` from `stores[i]`."""

    ckpt: Checkpoint
    prompt_text: str
    n_prompt_tokens: int
    names: list[str]
    layouts: dict[RowKey, Layout]
    gaps: dict[RowKey, GapChoice]
    stores: list[WeightStore]
    folder: Path
    keys: list[RowKey]


def cut_prompt(spec: EndToEndSpec, ckpt: Checkpoint) -> tuple[str, int]:
    """The prompt text (its first `prompt_tokens` tokens when given) and its token count;
    InputError when prompt + generated tokens pass the model's context."""
    return cut_text(spec.prompt_text, spec, ckpt, spec.prompt_tokens)


def cut_text(text: str, spec: EndToEndSpec, ckpt: Checkpoint, prompt_tokens: int | None
             ) -> tuple[str, int]:
    """`text` cut to `prompt_tokens` (BOS included; None: whole) and its token count."""
    tok = load_tokenizer(spec.model_dir)
    ids = prompt_ids(tok, ckpt.spec, text, spec.tokens, prompt_tokens)
    if prompt_tokens is None:
        return text, len(ids)
    bos = ckpt.spec.bos_token_id
    body = ids[1:] if bos is not None and ids and ids[0] == bos else ids
    cut = tok.decode([int(i) for i in body])
    # byte-level BPE: the cut text re-encodes to the same ids, or one fewer at the cut
    return cut, len(prompt_ids(tok, ckpt.spec, cut, spec.tokens))


def gap_params(spec: EndToEndSpec) -> Any:
    """The profile the merge gap is resolved on (None with --calibrate and a fixed gap)."""
    return None if spec.profile is None else load_params(spec.profile)


def row_layouts(spec: EndToEndSpec, params: Any, train_trace: ActivationTrace | None
                ) -> tuple[dict[RowKey, Layout], dict[RowKey, GapChoice]]:
    """Each row's layout, made with the merge gap of its QD (auto: the break-even gap)."""
    layouts, gaps = {}, {}
    for i, name in enumerate(spec.layouts):
        for q in spec.qds:
            layouts[(i, q)], gaps[(i, q)] = row_layout(spec, params, name, q, train_trace)
    return layouts, gaps


def row_layout(spec: EndToEndSpec, params: Any, name: str, queue_depth: int,
               train_trace: ActivationTrace | None) -> tuple[Layout, GapChoice]:
    """Layout `name` with the merge gap the spec gives at `queue_depth`, and that gap."""
    block = spec.block_bytes or DEFAULT_BLOCK_BYTES
    gap = resolve_merge_gap(spec.merge_gap, params, queue_depth, block, key="merge_gap")
    return make_layout(name, train_trace=train_trace, block_bytes=block,
                       merge_gap_bytes=gap.gap_bytes), gap


def open_stores(spec: EndToEndSpec, ckpt: Checkpoint, layouts: dict[RowKey, Layout]
                ) -> list[WeightStore]:
    """One store per layout name (the merge gap does not move a neuron), built on first use
    with `build_stores`."""
    folder = Path(spec.store)
    if folder.is_file():
        raise InputError("not a folder", file=folder, key="store",
                         expected="a folder for the layouts' stores")
    store_folder(folder, spec.build_stores)
    first = {i: layouts[(i, q)] for (i, q) in reversed(list(layouts))}
    return [store_for(ckpt, first[i], folder, ckpt.geometry, build=spec.build_stores)
            for i in range(len(spec.layouts))]


def prepare(spec: EndToEndSpec, train_trace: ActivationTrace | None = None) -> EndToEndSetup:
    """Prompt, row layouts and stores; every check that needs no disk runs before a store
    is built."""
    ckpt = load_checkpoint(spec.model_dir)
    text, n_prompt = cut_prompt(spec, ckpt)
    layouts, gaps = row_layouts(spec, gap_params(spec), train_trace)
    stores = open_stores(spec, ckpt, layouts)
    keys = [(i, q) for i in range(len(spec.layouts)) for q in spec.qds]
    return EndToEndSetup(ckpt, text, n_prompt, list(spec.layouts), layouts, gaps, stores,
                         Path(spec.store), keys)
