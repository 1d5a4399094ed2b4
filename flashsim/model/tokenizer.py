"""The model's tokenizer: `tokenizer.json` in the model folder, read with `tokenizers`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..data import bundled_model_dir
from ..errors import InputError


def load_tokenizer(model_dir: str | os.PathLike | None = None):
    """A `tokenizers.Tokenizer` from `<model_dir>/tokenizer.json` (None: the bundled model)."""
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise InputError("no tokenizer.json in the model folder", file=folder,
                         expected="a tokenizer.json written by the tokenizers library")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own exception type
        raise InputError(f"unreadable tokenizer ({exc})", file=path) from None


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as the tokenizer's own post-processor makes them."""
    return list(tokenizer.encode(text).ids)


def check_request(prompt_text: object, n_tokens: object) -> None:
    """InputError for an empty prompt or a non-positive token count (before any loading)."""
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) or n_tokens <= 0:
        raise InputError(f"cannot generate {n_tokens!r} tokens", key="tokens",
                         expected="a positive number of tokens")
    if not isinstance(prompt_text, str) or not prompt_text.strip():
        raise InputError("the prompt is empty", key="prompt", expected="some text")


def prompt_ids(tokenizer, spec, prompt_text: str, n_tokens: int,
               prompt_tokens: int | None = None) -> list[int]:
    """The prompt's token ids as OPT sees them (starting with its BOS `</s>`), cut to
    `prompt_tokens` if given; InputError when it is empty or prompt + `n_tokens` passes the
    model's context (learned positions stop at max_position_embeddings)."""
    ids = encode(tokenizer, prompt_text)
    if spec.bos_token_id is not None and (not ids or ids[0] != spec.bos_token_id):
        ids = [int(spec.bos_token_id)] + ids
    if prompt_tokens is not None:
        if len(ids) < prompt_tokens:
            raise InputError(f"the prompt has only {len(ids)} tokens", key="prompt_tokens",
                             expected=f"a prompt of at least {prompt_tokens} tokens")
        ids = ids[:prompt_tokens]
    if len(ids) <= (spec.bos_token_id is not None):
        raise InputError("the prompt has no tokens", key="prompt", expected="some text")
    if len(ids) > spec.max_positions:
        raise InputError(f"the prompt has {len(ids)} tokens, longer than the model's context",
                         key="prompt", expected=f"at most {spec.max_positions} tokens "
                         "(max_position_embeddings)")
    if len(ids) + n_tokens > spec.max_positions:
        raise InputError(f"prompt ({len(ids)} tokens) + {n_tokens} generated tokens passes the "
                         f"model's context", key="tokens",
                         expected=f"at most {spec.max_positions - len(ids)} tokens for this prompt")
    return ids
