"""One redactor for everything that leaves the worker, and terminal-safe printing of untrusted text.

Agents run unattended on text written by others, session histories hold whatever people typed (tokens
included), and agent output is untrusted. So every event, report, task text, commit message, PR body and
log line passes through a `Redactor` before it leaves the process, and everything printed to a terminal
passes through `strip_control`.

What a `Redactor` masks (each secret part becomes `***`, whatever prefix names it stays):

- the values (6+ characters) of secret-named environment variables (`SECRET_NAME`), and passwords found
  in URL-valued variables (`ORCH_REDIS_URL=redis://:pw@host`), matched on token boundaries, plus their
  standard / URL-safe base64 (also at any byte offset inside a larger blob, as in a `Basic` header),
  URL-encoded and JSON-escaped forms;
- whatever the environment says: URL userinfo, `token=`-style parameters, `Authorization` headers and
  `Bearer`/`Basic` credentials, and well-known token shapes (GitHub, OpenAI, Anthropic, AWS key ids,
  Slack, Google API keys, JWTs, PEM private key blocks).

Pure Python on purpose: no Celery, nothing of orchestration, so any layer can use it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, unquote

from pydantic import BaseModel

MASK = "***"
MIN_SECRET_LEN = 6  # shorter values are too common to mask without mangling ordinary text
MIN_PARTIAL_LEN = 4  # a split secret's fragment at a string edge is masked from this length on
STREAM_TAIL = 200  # how much of the previous string a stream remembers

_W = "A-Za-z0-9_"  # token characters: a secret value is matched only where it is not glued to these

# Names whose values are secrets. `PAT` only as a whole word part (GITHUB_PAT, PAT_TOKEN), never PATH;
# AUTH but not AUTHOR (GIT_AUTHOR_NAME is a name, not a credential).
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|PWD|(?:^|_)PAT(?:_|$)|CREDENTIAL|AUTH(?!OR)|DSN|PRIVATE|SESSION"
    r"|COOKIE|SIGNATURE",
    re.IGNORECASE,
)
# Well-known variables that match SECRET_NAME but hold paths, sockets or switches, not secrets: masking
# their values would only mangle ordinary text (`wayland`, `ubuntu`, a home directory).
NOT_SECRET_NAMES = frozenset(
    {
        "PWD",
        "OLDPWD",
        "SSH_AUTH_SOCK",
        "XAUTHORITY",
        "DESKTOP_SESSION",
        "SESSION_MANAGER",
        "DBUS_SESSION_BUS_ADDRESS",
        "GNOME_KEYRING_CONTROL",
        "KEYTIMEOUT",
        "TOKENIZERS_PARALLELISM",
        "ORCH_KEY_PREFIX",
    }
)
_NOT_SECRET_PREFIXES = ("XDG_SESSION_",)

# Values that secret-named switches commonly hold (PIP_KEYRING_PROVIDER=subprocess): never secrets, and
# masking them would mangle ordinary words everywhere.
NOT_SECRET_VALUES = frozenset(
    {
        "true",
        "false",
        "none",
        "null",
        "enabled",
        "disabled",
        "default",
        "required",
        "optional",
        "always",
        "never",
        "localhost",
        "subprocess",
        "keyring",
        "keychain",
    }
)

_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:([^\s/@]+)@")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    if upper in NOT_SECRET_NAMES or upper.startswith(_NOT_SECRET_PREFIXES):
        return False
    return SECRET_NAME.search(name) is not None


def secret_values(env: Mapping[str, str]) -> set[str]:
    """The raw secret values an environment holds: secret-named values, and URL passwords in any value."""
    found: set[str] = set()
    for name, value in env.items():
        if not isinstance(value, str):
            continue
        if len(value) >= MIN_SECRET_LEN and value.lower() not in NOT_SECRET_VALUES and is_secret_name(name):
            found.add(value)
        if "://" in value and "@" in value:
            for password in _URL_PASSWORD.findall(value):
                for form in (password, unquote(password)):
                    if len(form) >= MIN_SECRET_LEN:
                        found.add(form)
    return found


def _is_word(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def literal_forms(value: str) -> set[str]:
    """The value as written, URL-encoded and JSON-escaped: matched on token boundaries."""
    forms = {value}
    quoted = quote(value, safe="")
    candidates = [
        quoted,
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    ]
    forms.update(c for c in candidates if c != value and len(c) >= MIN_SECRET_LEN)
    return forms


def base64_cores(value: str) -> set[str]:
    """The part of the value's base64 that is the same wherever the value sits inside a larger blob.

    Base64 works in 3-byte groups, so a value preceded by 0, 1 or 2 other bytes encodes three ways. For
    each, drop the leading characters that also carry the filler's bits and the trailing character that
    carries bits of whatever follows: what is left appears verbatim in any blob that contains the value.
    """
    raw = value.encode()
    cores: set[str] = set()
    for filler in range(3):
        data = b"\0" * filler + raw
        start = -(-filler * 8 // 6)  # ceil: characters touched by the filler
        stop = len(data) * 8 // 6  # floor: characters made only of known bits
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(data).decode()[start:stop]
            if len(core) >= MIN_SECRET_LEN:
                cores.add(core)
    return cores


_END = ""  # trie key marking the end of a word (never a real one-character key)


def _alternation(words: Iterable[str], bounded: bool) -> str:
    """One regex for many literals, as a radix tree: at each position at most one branch is tried, so
    hundreds of secret forms cost about as much as one on a large string.

    `bounded`: a word that starts (ends) with a token character must not be preceded (followed) by one.
    The start check sits after the first character so that the regex engine can still skip positions
    that no word can start at.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[_END] = {}
    return _branch(trie, "", bounded, root=True)


def _branch(node: dict[str, Any], last: str, bounded: bool, root: bool = False) -> str:
    alts: list[str] = []
    for ch, child in node.items():
        if ch == _END:
            continue
        run, cur = ch, child
        while len(cur) == 1 and _END not in cur:
            ((nxt, cur),) = cur.items()
            run += nxt
        head = re.escape(run[0])
        if root and bounded and _is_word(run[0]):
            head += rf"(?<![{_W}].)"
        alts.append(head + re.escape(run[1:]) + _branch(cur, run[-1], bounded))
    if _END in node:  # last, so that a longer word is preferred
        alts.append(rf"(?![{_W}])" if bounded and _is_word(last) else "")
    if len(alts) == 1:
        return alts[0]
    return "(?:" + "|".join(alts) + ")" if alts else ""


@dataclass(frozen=True)
class _Rule:
    """A pattern whose group `s` (or whole match) is the secret; `keep` spares matches that are not one."""

    pattern: re.Pattern[str]
    keep: Callable[[str], bool] | None = None


def _credential_like(text: str) -> bool:
    """`Bearer`/`Basic` followed by prose ("Basic authentication") is not a credential; a token has
    digits, inner capitals or base64 punctuation."""
    return any(c.isdigit() for c in text) or any(c.isupper() for c in text[1:]) or any(c in "+/=" for c in text)


def _plain_username(user: str) -> bool:
    """`ssh://git@host`, `https://deploy@host`: a short lowercase name is a user, not a token."""
    return re.fullmatch(r"[a-z][a-z.-]{0,15}", user) is not None


_PARAMS = (
    "access_token|refresh_token|id_token|auth_token|private_token|client_secret|api_key|apikey|token|key"
    "|password|passwd|pwd|secret|signature|sig"
)
_TOKEN_SHAPES = (
    r"gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-)
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
)
RULES: tuple[_Rule, ...] = (
    _Rule(
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?P<s>.{0,20000}?(?=-----END [A-Z0-9 ]*PRIVATE KEY-----)"
            r"|[A-Za-z0-9+/=\s\\]+)",
            re.DOTALL,
        )
    ),
    _Rule(re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:(?P<s>[^\s/@]+)@")),
    _Rule(re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?P<s>[^\s/@:]+)@"), keep=_plain_username),
    _Rule(re.compile(rf"(?<![{_W}])(?:{_PARAMS})=(?P<s>[^&\s\"'`]+)", re.IGNORECASE)),
    _Rule(
        re.compile(
            r"(?<![A-Za-z0-9-])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?:bearer|basic|token|digest|negotiate)\s+)?(?P<s>[^\s\"',;]+)",
            re.IGNORECASE,
        )
    ),
    _Rule(
        re.compile(rf"(?<![{_W}])(?:bearer|basic)\s+(?P<s>[A-Za-z0-9._~+/=-]{{8,}})", re.IGNORECASE),
        keep=lambda s: not _credential_like(s),
    ),
    _Rule(re.compile(rf"(?<![A-Za-z0-9])(?:{_TOKEN_SHAPES})")),
    _Rule(re.compile(r"hooks\.slack\.com/services/(?P<s>[A-Za-z0-9/_-]+)")),
)
# The start of a token shape, or of a credential after `Bearer`/`Basic`, running to the end of a string:
# the rest may come in the next one.
_SHAPE_PREFIX_AT_END = re.compile(
    r"(?<![A-Za-z0-9])(?:gh[pousr]_|github_pat_|sk-|xox[abposr]-|AKIA|ASIA|AIza|eyJ)[A-Za-z0-9_.-]*\Z"
)
_CREDENTIAL_AT_END = re.compile(rf"(?<![{_W}])(?:bearer|basic)\s+(?P<s>[A-Za-z0-9._~+/=-]+)\Z", re.IGNORECASE)

Span = tuple[int, int]


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for a, b in sorted(s for s in spans if s[0] < s[1]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _apply(text: str, spans: list[Span]) -> str:
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for a, b in _merge(spans):
        parts += [text[pos:a], MASK]
        pos = b
    parts.append(text[pos:])
    return "".join(parts)


def _span(m: re.Match[str]) -> Span:
    if "s" in m.re.groupindex and m.group("s") is not None:
        return m.span("s")
    return m.span()


class Redactor:
    """Masks secrets in strings and in the strings inside dicts, lists and tuples.

    Built from an environment (default: `os.environ`) plus `extra` secret values (6+ characters).
    """

    def __init__(self, env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> None:
        values = secret_values(os.environ if env is None else env)
        values.update(v for v in extra if isinstance(v, str) and len(v) >= MIN_SECRET_LEN)
        self.values = frozenset(values)
        literals: set[str] = set()
        cores: set[str] = set()
        for value in values:
            literals |= literal_forms(value)
            cores |= base64_cores(value)
        cores -= literals
        self._literals = sorted(literals, key=len, reverse=True)
        self.longest = len(self._literals[0]) if self._literals else 0
        alts = [p for p in (_alternation(literals, True), _alternation(cores, False)) if p]
        # Inside a lookahead: a match at every position, so overlapping secrets are all found.
        self._known = re.compile("(?=(" + "|".join(alts) + "))") if alts else None

    # -- matching ------------------------------------------------------------------------------------

    def spans(self, text: str) -> list[Span]:
        """Where the secrets are in `text` (overlapping spans possible; `_apply` merges them)."""
        found: list[Span] = []
        if self._known is not None:
            found += [m.span(1) for m in self._known.finditer(text)]
        for rule in RULES:
            for m in rule.pattern.finditer(text):
                a, b = _span(m)
                if rule.keep is None or not rule.keep(text[a:b]):
                    found.append((a, b))
        return found

    def trailing(self, text: str) -> Span | None:
        """A secret that may continue in the next string: a prefix (4+ characters) of a known value, or the
        start of a token shape or of a `Bearer` credential, running to the end of `text`."""
        best: int | None = None
        m = _SHAPE_PREFIX_AT_END.search(text)
        if m:
            best = m.start()
        m = _CREDENTIAL_AT_END.search(text)
        if m and _credential_like(m.group("s")):
            best = m.start("s") if best is None else min(best, m.start("s"))
        n = len(text)
        for form in self._literals:
            head = form[:MIN_PARTIAL_LEN]
            i = text.find(head, max(0, n - len(form) + 1))
            while i != -1:
                if text[i:] == form[: n - i] and not (_is_word(form[0]) and i > 0 and _is_word(text[i - 1])):
                    best = i if best is None else min(best, i)
                    break
                i = text.find(head, i + 1)
        return None if best is None else (best, n)

    def leading(self, text: str) -> Span | None:
        """The end (4+ characters) of a known value at the start of `text`: the rest of a split secret."""
        head = text[:MIN_PARTIAL_LEN]
        if len(head) < MIN_PARTIAL_LEN:
            return None
        best = 0
        for form in self._literals:
            k = form.find(head, 1)
            while k != -1:
                rest = form[k:]
                if text.startswith(rest) and not (
                    _is_word(rest[-1]) and len(text) > len(rest) and _is_word(text[len(rest)])
                ):
                    best = max(best, len(rest))
                    break
                k = form.find(head, k + 1)
        return (0, best) if best else None

    # -- redacting -----------------------------------------------------------------------------------

    def text(self, text: str) -> str:
        return _apply(text, self.spans(text))

    def __call__(self, value: Any) -> Any:
        """Strings are masked; dicts (keys and values), lists and tuples recursively; anything else as is."""
        return self._walk(value, {})

    def _walk(self, value: Any, done: dict[str, str]) -> Any:
        # `done`: the strings of this value masked so far. Reports repeat the same keys and names many times
        # (an analysis: ~2,600 strings, ~800 distinct), and masking one is ~10 regular-expression scans.
        if isinstance(value, str):
            masked = done.get(value)
            if masked is None:
                masked = done[value] = self.text(value)
            return masked
        if isinstance(value, dict):
            return {(self._walk(k, done) if isinstance(k, str) else k): self._walk(v, done) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, done) for v in value]
        if isinstance(value, tuple):
            return tuple(self._walk(v, done) for v in value)
        return value

    def stream(self, tail: int = STREAM_TAIL) -> RedactStream:
        return RedactStream(self, tail)


class RedactStream:
    """A redactor for a sequence of strings (one agent run's events), so that a secret split over two
    of them is masked in both.

    Guarantees, for the strings passed through one stream (in dicts, per key path: `data["text"]` of one
    event continues `data["text"]` of the previous one; bare strings continue each other):

    - each string is masked as `Redactor` masks it on its own;
    - a match that starts in the last `tail` characters (at least the longest known value) of the earlier
      strings at that key path and ends in this one is masked in this one (the earlier part was masked by
      the next rule);
    - the end of each string that is a prefix (4+ characters) of a known secret value, or the start of a
      token shape (`ghp_`, `github_pat_`, `sk-`, `xoxb-`, `AKIA`, ...) or `Bearer` credential running to
      the end, is masked, since the rest may come next;
    - the start of each string that is the end (4+ characters) of a known secret value is masked.

    So of a known value split anywhere, at most its first and its last 3 characters can show; of a token
    shape, at most part of its fixed prefix (`gh`, `github_pa`); of a `Bearer` credential, a fragment with
    no digit, inner capital or base64 punctuation. A text that merely ends with the first 4 characters of a
    known value, or with `sk-`, loses them too: the price of the guarantee.
    """

    def __init__(self, redactor: Redactor, tail: int = STREAM_TAIL) -> None:
        self.redactor = redactor
        self.size = max(tail, redactor.longest)
        self._tails: dict[tuple[str, ...], str] = {}
        self._lock = threading.Lock()

    def text(self, text: str, key: tuple[str, ...] = ()) -> str:
        r = self.redactor
        with self._lock:
            before = self._tails.get(key, "")
            joined = before + text
            self._tails[key] = joined[-self.size :]
        off = len(before)
        spans = [(max(a, off) - off, b - off) for a, b in r.spans(joined) if b > off]
        end = r.trailing(joined)
        if end is not None:
            spans.append((max(end[0], off) - off, end[1] - off))
        start = r.leading(text)
        if start is not None:
            spans.append(start)
        return _apply(text, spans)

    def __call__(self, value: Any, _path: tuple[str, ...] = ()) -> Any:
        if isinstance(value, str):
            return self.text(value, _path)
        if isinstance(value, dict):
            return {
                (self.redactor.text(k) if isinstance(k, str) else k): self(v, (*_path, str(k)))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self(v, _path) for v in value]
        if isinstance(value, tuple):
            return tuple(self(v, _path) for v in value)
        return value


M = TypeVar("M", bound=BaseModel)


def redact_model(model: M, redactor: Redactor | None = None) -> M:
    """The same model with every string field redacted (through its JSON form, so validation still holds)."""
    red = redactor or default_redactor()
    return type(model).model_validate(red(model.model_dump(mode="json")))


_default_lock = threading.Lock()
_default: tuple[tuple[tuple[str, str], ...], Redactor] | None = None


def _relevant(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (k, v)
            for k, v in env.items()
            if (len(v) >= MIN_SECRET_LEN and is_secret_name(k)) or ("://" in v and "@" in v)
        )
    )


_seen_env: tuple[object, tuple[tuple[str, str], ...]] | None = None


def _relevant_now() -> tuple[tuple[str, str], ...]:
    """`_relevant(os.environ)`, worked out again only when the environment changed: every event and every
    log line asks, and the environment's raw items are compared at a fraction of the cost of reading names."""
    global _seen_env
    raw = getattr(os.environ, "_data", None)  # CPython's undecoded copy, kept in step with os.environ
    snapshot: object = tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())
    seen = _seen_env
    if seen is not None and seen[0] == snapshot:
        return seen[1]
    key = _relevant(os.environ)
    _seen_env = (snapshot, key)
    return key


def default_redactor() -> Redactor:
    """The redactor of the current `os.environ`, rebuilt when a secret-bearing variable changed."""
    global _default
    key = _relevant_now()
    with _default_lock:
        if _default is None or _default[0] != key:
            _default = (key, Redactor(os.environ))
        return _default[1]


# -- logging ---------------------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Redacts a record's formatted message (and traceback) before any handler writes it."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        red = self.redactor or default_redactor()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        record.msg = red.text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = red.text(record.exc_text)
        if record.stack_info:
            record.stack_info = red.text(record.stack_info)
        return True


def install_logging_filter(logger: logging.Logger | None = None) -> None:
    """Adds a `RedactingFilter` to every handler of the logger (default: root), once."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


# -- terminal output -------------------------------------------------------------------------------------

_ST = r"(?:\x07|\x1b\\|\x9c)"  # string terminators: BEL, ESC \, 8-bit ST
_CONTROL = re.compile(
    rf"[\x1b][\]PX^_][^\x07\x1b\x9c\n]*{_ST}?"  # OSC (52 clipboard, 8 hyperlinks), DCS, SOS, PM, APC
    rf"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c\n]*{_ST}?"  # their 8-bit forms
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI: colours, cursor moves, clear screen
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # 8-bit CSI
    r"|\x1b[ -/]*[0-~]?"  # any other escape sequence, or a lone ESC
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # the remaining C0 (but \t and \n), DEL and C1 controls; \r too
)


def strip_control(text: str) -> str:
    """Untrusted text made safe to print: no escape sequence, no control character but newline and tab."""
    return _CONTROL.sub("", text)


def fenced(text: str, info: str = "") -> list[str]:
    """Untrusted text as a markdown code block, fenced longer than any backtick run inside it, so that it can
    never break out and render as markdown (a heading, an image, an issue-closing keyword, a mention)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text, fence]
