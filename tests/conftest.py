"""Test tiers: markers that let the inner loop skip what is slow or touches the real disk.

    python -m pytest -m "not disk and not slow" -n 2       # inner loop, about a minute on 2 cores
    python -m pytest -q -n 2 --dist loadfile                # everything (what CI runs)

A module marks itself with `pytestmark = pytest.mark.<name>` (or a list), a single test with
`@pytest.mark.<name>`. pyproject.toml passes --strict-markers, so only these names are accepted.
"""

from __future__ import annotations

import pytest

MARKERS = {
    "disk": "real reads (O_DIRECT or page cache) on this machine's disk; timing depends on it",
    "slow": "takes more than about 5 s on one core",
    "notebook": "executes a notebook in notebooks/ through a Jupyter kernel",
    "torch": "needs the train extra (torch, transformers)",
    "dask": "needs the dask extra (dask.distributed)",
    "apt": "needs a Debian package (fio, python3.11-doc), installed by .ci/run",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, what in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what}")
