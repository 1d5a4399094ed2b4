"""The model's tokenizer: `tokenizer.json` in the model folder, read with `tokenizers`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .bundled import bundled_model_dir


def load_tokenizer(model_dir: str | os.PathLike | None = None):
    """A `tokenizers.Tokenizer` from `<model_dir>/tokenizer.json` (None: the bundled model)."""
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise InputError("no tokenizer.json in the model folder", file=folder,
                         expected="a tokenizer.json written by the tokenizers library")
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - tokenizers is a dependency
        raise InputError("the 'tokenizers' package is not installed", file=path,
                         expected="pip install tokenizers") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own exception type
        raise InputError(f"unreadable tokenizer ({exc})", file=path) from None


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as the tokenizer's own post-processor makes them."""
    return list(tokenizer.encode(text).ids)
