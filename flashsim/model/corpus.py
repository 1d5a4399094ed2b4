"""English prose corpus for opt-mini: the reST sources of Debian's python3.11-doc, markup stripped.

Source: Debian package `python3.11-doc` (PSF License), files under
/usr/share/doc/python3.11/html/_sources/**/*.rst.txt. Markup, code blocks, doctests,
tables and non-prose directives are removed; paragraphs are re-flowed to one line each.
The train / held-out split is by file, decided by a hash of the file's relative path, so it
does not depend on listing order or on which other files exist. The bundled opt-mini model was
trained on the 'train' split; its held-out text (flashsim/data/text) comes from the others.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

DOC_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
DOC_PACKAGE = "python3.11-doc"
DOC_LICENSE = "PSF License (Python Software Foundation License Version 2)"
HELDOUT_PERCENT = 5  # share of files (by path hash) never trained on
SPLIT_SALT = "opt-mini-split-v1"

# Held-out files are further divided (by the same kind of hash) into three disjoint roles.
HELDOUT_ROLES = ("eval", "prompts", "trace_train")
# held-out paragraphs longer than this many characters are also searched inside training text
MIN_SUBSTRING_CHECK = 40

# Directives whose whole body is code, tables, indexes or metadata: dropped with their block.
_DROP_DIRECTIVES = {
    "code-block", "sourcecode", "code", "literalinclude", "testcode", "testoutput",
    "testsetup", "testcleanup", "doctest", "productionlist", "index", "toctree",
    "highlight", "highlightlang", "raw", "image", "figure", "csv-table", "list-table",
    "table", "tabularcolumns", "include", "moduleauthor", "sectionauthor",
    "module", "currentmodule", "audit-event", "audit-event-table", "only", "cssclass",
    "rst-class", "limited-api-list", "availability", "opcode", "program", "option",
    "cmdoption", "envvar", "pdbcommand", "2to3fixer", "c:macro", "c:var",
    "literal-block", "parsed-literal", "math", "graphviz", "digraph",
}

_SECTION_RE = re.compile(r"^([=\-~^\"'`#*+_.:<>])\1{2,}\s*$")
_DIRECTIVE_RE = re.compile(r"^(\s*)\.\.\s+([\w:.-]+)::(.*)$")
_COMMENT_RE = re.compile(r"^(\s*)\.\.(\s|$)")
_OPTION_RE = re.compile(r"^\s*:[\w -]+:(\s.*)?$")
_ROLE_RE = re.compile(r":[\w:.-]+:`([^`]*)`")
_LITERAL_RE = re.compile(r"``([^`]*)``")
_LINK_RE = re.compile(r"`([^`<]*?)\s*(<[^>]*>)?`__?")
_EMPH_RE = re.compile(r"\*\*?([^*\s][^*]*?)\*\*?")
_SUBST_RE = re.compile(r"\|([\w -]+)\|_?")
_FOOTREF_RE = re.compile(r"\s*\[(#\w*|\*|\d+)\]_")


def _role_text(m: re.Match[str]) -> str:
    text = m.group(1)
    t = re.match(r"^(.*?)\s*<[^>]*>$", text, re.S)
    if t and t.group(1):
        return t.group(1)
    text = text.lstrip("!")
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return text


def _inline(text: str) -> str:
    text = _ROLE_RE.sub(_role_text, text)
    text = _LITERAL_RE.sub(r"\1", text)
    text = _LINK_RE.sub(lambda m: m.group(1) or (m.group(2) or "").strip("<>"), text)
    text = _FOOTREF_RE.sub("", text)
    text = _SUBST_RE.sub(r"\1", text)
    text = _EMPH_RE.sub(r"\1", text)
    text = text.replace("\\ ", "").replace("\\", "")
    return " ".join(text.split())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


_ADMONITIONS = frozenset({
    "note", "warning", "seealso", "important", "tip", "caution", "attention", "hint",
    "admonition", "impl-detail", "versionadded", "versionchanged", "deprecated",
    "deprecated-removed", "topic",
})


def clean_rst(source: str) -> str:
    """Strip reST markup from one source file; returns prose paragraphs joined by blank lines."""
    lines = source.expandtabs(8).splitlines()
    out: list[str] = []  # kept lines, "" marks a paragraph break
    i = 0
    while i < len(lines):
        i = _consume(lines, i, out)
    return "\n\n".join(p for p in _paragraphs(out) if _is_prose(p))


def _consume(lines: list[str], i: int, out: list[str]) -> int:
    """Read the construct starting at lines[i] into `out`; returns the next line to read."""
    line = lines[i]
    stripped = line.strip()
    if not stripped:
        out.append("")
        return i + 1
    if _DIRECTIVE_RE.match(line) or _COMMENT_RE.match(line):
        return _directive(lines, i, out)
    if _SECTION_RE.match(stripped) or stripped.startswith(("+--", "+==", "|")):
        out.append("")
        return i + 1
    if stripped.startswith(">>>"):  # a doctest runs to the next blank line
        while i < len(lines) and lines[i].strip():
            i += 1
        return i
    if stripped.endswith("::"):  # a trailing "::" opens a literal (code) block
        return _literal(lines, i, out)
    out.append(_inline(stripped))
    return i + 1


def _directive(lines: list[str], i: int, out: list[str]) -> int:
    """A directive or comment: an admonition keeps its one-line text and its body (read on as
    ordinary lines), a dropped directive or a comment loses its indented body."""
    line, n = lines[i], len(lines)
    d = _DIRECTIVE_RE.match(line)
    base = _indent(line)
    name = d.group(2).lower() if d else ""
    keep_body = bool(d) and name not in _DROP_DIRECTIVES
    if keep_body and name in _ADMONITIONS:
        # versionadded:: 3.2 ... keeps only the sentence after the version number
        rest = re.sub(r"^[\d.]+(\s+[\d.]+)?\s*", "", d.group(3).strip())
        if rest:
            out.append(_inline(rest))
    out.append("")
    i += 1
    while i < n and lines[i].strip() and _indent(lines[i]) > base and _OPTION_RE.match(lines[i]):
        i += 1
    if not keep_body:
        while i < n and (not lines[i].strip() or _indent(lines[i]) > base):
            i += 1
    return i


def _literal(lines: list[str], i: int, out: list[str]) -> int:
    """A text line ending in "::" and the indented literal block after it (dropped)."""
    stripped = lines[i].strip()
    text = stripped[:-2].rstrip()
    if text and not stripped.endswith(" ::"):
        text += ":"  # "Example::" reads "Example:"; "Example ::" reads "Example"
    out.append(_inline(text) if text else "")
    base = _indent(lines[i])
    i += 1
    n = len(lines)
    while i < n and not lines[i].strip():
        i += 1
    while i < n and (not lines[i].strip() or _indent(lines[i]) > base):
        i += 1
    out.append("")
    return i


def _paragraphs(pieces: list[str]) -> list[str]:
    """Join consecutive kept lines into one-line paragraphs ("" separates them)."""
    paragraphs: list[str] = []
    cur: list[str] = []
    for piece in pieces + [""]:
        if piece:
            cur.append(piece)
        elif cur:
            paragraphs.append(" ".join(cur))
            cur = []
    return paragraphs


def _is_prose(paragraph: str) -> bool:
    """Keep paragraphs that read as English sentences, not leftovers of tables or signatures."""
    words = paragraph.split()
    if len(words) < 4:
        return False
    letters = sum(c.isalpha() or c.isspace() for c in paragraph)
    return letters / len(paragraph) >= 0.75


def _hash_percent(rel_path: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{rel_path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def split_of(rel_path: str) -> str:
    """'train' or 'heldout' for a source path relative to DOC_ROOT ('tutorial/classes.rst.txt')."""
    return "heldout" if _hash_percent(rel_path, SPLIT_SALT) < HELDOUT_PERCENT else "train"


def heldout_role(rel_path: str) -> str:
    """For a held-out file, which disjoint role it serves: 'eval', 'prompts' or 'trace_train'."""
    if split_of(rel_path) != "heldout":
        raise ValueError(f"{rel_path} is in the training split")
    return HELDOUT_ROLES[_hash_percent(rel_path, SPLIT_SALT + ":role") % len(HELDOUT_ROLES)]


@dataclass(frozen=True)
class Document:
    """One cleaned source file."""
    rel_path: str
    text: str


def load_documents(root: Path = DOC_ROOT) -> list[Document]:
    """All cleaned documents, sorted by relative path; empty ones dropped."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} not found: install the Debian package {DOC_PACKAGE} "
            f"(apt-get install {DOC_PACKAGE})")
    docs = []
    for path in sorted(root.rglob("*.rst.txt")):
        rel = path.relative_to(root).as_posix()
        text = clean_rst(path.read_text(encoding="utf-8", errors="replace"))
        if text:
            docs.append(Document(rel, text))
    return docs


def split_documents(docs: list[Document]) -> dict[str, list[Document]]:
    """Group documents into 'train' and the held-out roles ('eval', 'prompts', 'trace_train').

    The docs repeat some boilerplate across files, so held-out paragraphs that also occur in
    the training text (whole, or inside a training paragraph) are dropped from held-out docs.
    """
    groups: dict[str, list[Document]] = {"train": [], **{r: [] for r in HELDOUT_ROLES}}
    for d in docs:
        key = "train" if split_of(d.rel_path) == "train" else heldout_role(d.rel_path)
        groups[key].append(d)
    train_paragraphs = {p for d in groups["train"] for p in d.text.split("\n\n")}
    train_text = "\n".join(d.text for d in groups["train"])
    for role in HELDOUT_ROLES:
        kept = []
        for d in groups[role]:
            paras = [p for p in d.text.split("\n\n")
                     if p not in train_paragraphs
                     and not (len(p) > MIN_SUBSTRING_CHECK and p in train_text)]
            if paras:
                kept.append(Document(d.rel_path, "\n\n".join(paras)))
        groups[role] = kept
    return groups

