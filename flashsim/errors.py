"""The one error type for bad user input: the CLI prints it as one line and exits 2."""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input (file, key, value): reported as `file: key: problem (expected ...)`.

    Raised anywhere in the library for things a user can fix; never for bugs.
    """

    def __init__(self, problem: str, *, file: str | os.PathLike | None = None,
                 key: str | None = None, expected: str | None = None) -> None:
        self.problem = problem
        self.file = os.fspath(file) if file is not None else None
        self.key = key
        self.expected = expected
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        text = ": ".join(parts + [self.problem])
        if self.expected:
            text += f" (expected {self.expected})"
        # one line, always: multi-line messages from libraries are folded
        return " ".join(text.split())
