"""flashsim: how long does a token take when an LLM's FFN weights live on flash?

A cost model of flash devices (SimPy, calibrated from real measurements), real activation
traces from a sparse OPT, the layouts of "LLM in a flash" (arXiv 2312.11514), and a real
loader that checks the model on a real disk. The public API is listed in `__all__`;
names are imported on first use so `import flashsim` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InputError
from .units import format_size, parse_size

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_API: dict[str, str] = {
}

__all__ = ["InputError", "parse_size", "format_size", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'flashsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
