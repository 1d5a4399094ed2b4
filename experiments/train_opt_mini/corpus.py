"""English prose corpus for opt-mini: the reST sources of Debian's python3.11-doc, markup stripped.

The corpus code lives in `flashsim.model.corpus` (the held-out check in the tests uses it too);
train.py and ../train_predictors import it under this name. Run this file to print the split.
"""

from __future__ import annotations

from flashsim.model.corpus import (  # noqa: F401  (re-exported for train.py)
    DOC_LICENSE,
    DOC_PACKAGE,
    DOC_ROOT,
    HELDOUT_PERCENT,
    HELDOUT_ROLES,
    SPLIT_SALT,
    Document,
    clean_rst,
    heldout_role,
    load_documents,
    split_documents,
    split_of,
)

if __name__ == "__main__":
    groups = split_documents(load_documents())
    for k, v in groups.items():
        print(k, len(v), sum(len(d.text) for d in v))
