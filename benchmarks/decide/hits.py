"""The hit rule: does a decision name the work?

A decision is a hit when

1. its title names the labelled target: one of the label's accepted spellings appears in it, case-insensitive,
   as a whole token (not inside a longer name: `test_dates` is in "tests/test_dates.py" but `dates.py` is
   not in "test_dates.py"); and
2. the first paragraph of its task (the text before the first blank line) names at most two files other than
   the target. A file is a token that looks like a path with an extension (`src/a.py`, `Cart.test.tsx`,
   `tests/test_x.py::test_y`, `src/a.py:12`), or that is a file of the history's repository (`Makefile`).
   A file is the target when it is one of the accepted spellings, ends with one (`repo/src/a.py`), is the end
   of one (`a.py` for `src/a.py`), or lies inside one (a file of the target package `pkg/ratelimit`).

The second condition keeps a task from scoring by listing every file the history touched.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from benchmarks.decide.records import Label

MAX_OTHER_FILES = 2
# Extensions that make a bare name (no directory) a file.
EXTENSIONS = frozenset(
    {
        "py", "pyi", "ipynb", "ts", "tsx", "js", "jsx", "mjs", "cjs", "go", "rs", "java", "kt", "rb", "php", "c",
        "h", "cc", "cpp", "hpp", "cs", "swift", "scala", "sh", "bash", "zsh", "sql", "toml", "json", "yaml", "yml",
        "ini", "cfg", "conf", "md", "rst", "txt", "csv", "lock", "mod", "sum", "html", "css", "scss", "vue",
        "svelte", "xml", "proto", "graphql", "tf", "env", "dockerfile", "mk",
    }
)  # fmt: skip
# Names with a file-like ending that are not files.
NOT_FILES = frozenset({"node.js", "next.js", "vue.js", "nuxt.js", "express.js", "three.js", "d3.js", "chart.js"})
_TOKEN = re.compile(r"[^\s`'\"()<>\[\]{},;|*]+")
_LOCATION = re.compile(r"(?::\d+)+:?$")  # file.py:12 / file.py:12:5:
_FILE_LIKE = re.compile(r"^(?:[\w@+.\-]+/)*[\w@+\-][\w@+.\-]*\.([A-Za-z][A-Za-z0-9]{0,9})$")
_WORD = r"[A-Za-z0-9_]"


@dataclass(frozen=True)
class Verdict:
    hit: bool
    named: str | None  # the accepted spelling the title holds
    others: tuple[str, ...]  # files other than the target in the task's first paragraph
    why: str


def first_paragraph(task: str) -> str:
    """The text before the first blank line."""
    lines: list[str] = []
    for line in task.strip().splitlines():
        if not line.strip():
            break
        lines.append(line)
    return "\n".join(lines)


def names(text: str, spelling: str) -> bool:
    """`spelling` occurs in `text` as a whole token, case-insensitive."""
    pattern = rf"(?<!{_WORD}){re.escape(spelling)}(?!{_WORD})"
    return re.search(pattern, text, re.IGNORECASE) is not None


def _clean(token: str, repo_root: str) -> str:
    token = token.split("::", 1)[0]
    token = token.rstrip(".:!?")
    token = _LOCATION.sub("", token)
    if repo_root and token.startswith(repo_root.rstrip("/") + "/"):
        token = token[len(repo_root.rstrip("/")) + 1 :]
    while token.startswith("./"):
        token = token[2:]
    return token


def files_in(text: str, repo_files: Collection[str], repo_root: str = "") -> list[str]:
    """The files `text` names, each once, in order (see the module's rule)."""
    known = {f.lower() for f in repo_files}
    basenames = {f.rsplit("/", 1)[-1].lower() for f in repo_files}
    out: list[str] = []
    seen: set[str] = set()
    for raw in _TOKEN.findall(text):
        token = _clean(raw, repo_root)
        low = token.lower()
        if not token or "://" in token or low in NOT_FILES or low in seen:
            continue
        m = _FILE_LIKE.match(token)
        looks = m is not None and ("/" in token or m.group(1).lower() in EXTENSIONS)
        if looks or low in known or low in basenames:
            seen.add(low)
            out.append(token)
    return out


def is_target(file: str, accepted: Sequence[str]) -> bool:
    file = file.lower().strip("/")
    for spelling in accepted:
        s = spelling.lower().split("::", 1)[0].strip("/")
        if not s:
            continue
        if file == s or file.endswith("/" + s) or s.endswith("/" + file) or file.startswith(s + "/"):
            return True
    return False


def judge(title: str, task: str, label: Label, repo_files: Collection[str], repo_root: str = "") -> Verdict:
    """Hit or miss, and why."""
    named = next((s for s in label.accepted if names(title, s)), None)
    others = tuple(
        f for f in files_in(first_paragraph(task), repo_files, repo_root) if not is_target(f, label.accepted)
    )
    if named is None:
        return Verdict(False, None, others, f"title does not name {label.target}")
    if len(others) > MAX_OTHER_FILES:
        listed = ", ".join(others[:6]) + (", …" if len(others) > 6 else "")
        return Verdict(False, named, others, f"first paragraph names {len(others)} other files: {listed}")
    extra = f", {len(others)} other file{'s' if len(others) != 1 else ''} in its first paragraph" if others else ""
    return Verdict(True, named, others, f"names {named}{extra}")
