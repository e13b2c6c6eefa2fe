"""The redactor every outgoing string passes through, and `strip_control` for what a terminal prints."""

from __future__ import annotations

import base64
import json
import logging
import time
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchestration.models import Decision, Insights, Unfinished
from orchestration.redact import (
    MASK,
    NOT_SECRET_VALUES,
    RedactingFilter,
    Redactor,
    default_redactor,
    install_logging_filter,
    is_secret_name,
    redact_model,
    strip_control,
)

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cr3t-Value-9f8e7d"
ENV = {"MY_SERVICE_TOKEN": SECRET, "HOME": "/home/someone", "SHORT_TOKEN": "abc12", "PATH": "/usr/bin:/bin"}
GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.fixture
def red() -> Redactor:
    return Redactor(ENV)


# --- values of secret-named variables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        SECRET,
        f"x {SECRET} y",
        f"/x/{SECRET}/y",
        f"key={SECRET}&z=1",
        f'"{SECRET}"',
        f"({SECRET}).",
        f"line one\n{SECRET}\n",
    ],
)
def test_env_value_on_token_boundaries_is_masked(red: Redactor, text: str) -> None:
    out = red(text)
    assert SECRET not in out and MASK in out
    assert out.replace(MASK, SECRET) == text


@pytest.mark.parametrize("text", [f"x{SECRET}", f"{SECRET}y", f"_{SECRET}_", f"9{SECRET}"])
def test_env_value_glued_to_a_longer_word_is_not_a_match(red: Redactor, text: str) -> None:
    assert red(text) == text


def test_short_values_common_paths_and_branch_names_are_kept() -> None:
    red = Redactor({"APP_TOKEN": "main12", "SHORT_KEY": "fix", "HOME": "/home/someone", "PWD": "/work/main/x"})
    for text in (
        "agent/orchestration/20261125-fix-main",
        "/home/someone/project/src/app.py",
        "cd /work/main/x && fix it",
        "refs/heads/main123",
    ):
        assert red(text) == text
    assert red("token main12 here") == "token *** here"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("GITHUB_PAT", True),
        ("PAT_TOKEN", True),
        ("SMTP_PASS", True),
        ("DB_PASSWD", True),
        ("SENTRY_DSN", True),
        ("MY_PRIVATE_THING", True),
        ("SESSION_COOKIE", True),
        ("WEBHOOK_SIGNATURE", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("ANTHROPIC_API_KEY", True),
        ("GH_AUTH", True),
        ("MYSQL_PWD", True),
        ("PATH", False),
        ("PWD", False),
        ("OLDPWD", False),
        ("HOME", False),
        ("GIT_AUTHOR_NAME", False),
        ("XDG_SESSION_TYPE", False),
        ("SSH_AUTH_SOCK", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret
    red = Redactor({name: "Value-0123456789"})
    assert (red("v: Value-0123456789") == "v: ***") is secret


def test_url_passwords_in_any_variable_are_secrets() -> None:
    red = Redactor(
        {
            "ORCH_REDIS_URL": "redis://:pw123456@redis.internal:6379/0",
            "ORCH_BROKER_URL": "amqp://guest:Rabbit-pw-77@mq:5672//",
            "PLAIN_URL": "https://example.com/x",
        }
    )
    assert red.values == {"pw123456", "Rabbit-pw-77"}
    assert red("auth failed for pw123456") == "auth failed for ***"
    assert red("Rabbit-pw-77 leaked") == "*** leaked"


def test_switch_values_of_secret_named_variables_are_not_secrets() -> None:
    red = Redactor({"PIP_KEYRING_PROVIDER": "subprocess", "SOME_AUTH_MODE": "disabled", "REAL_TOKEN": "Required-42"})
    assert red("import subprocess; auth disabled; Required-42") == "import subprocess; auth disabled; ***"


def test_extra_values_are_secrets_too() -> None:
    red = Redactor({}, extra=["agent-only-secret", "tiny"])
    assert red("x agent-only-secret tiny") == "x *** tiny"


# --- encoded forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1, 2, 5, 7])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_the_value_at_any_offset_in_a_larger_blob(red: Redactor, offset: int, encode: object) -> None:
    assert callable(encode)
    blob = encode(b"u" * offset + SECRET.encode() + b"\xfb\xff trailing bytes").decode()
    out = red(f"payload {blob} end")
    assert MASK in out and out.startswith("payload ") and out.endswith(" end")
    # what is left of the blob, read at any alignment, holds no 6 bytes of the value
    for piece in out.split()[1].split(MASK):
        for start in range(4):
            chunk = piece[start:]
            decoded = base64.b64decode(chunk[: len(chunk) // 4 * 4], altchars=b"-_")
            assert SECRET[:6].encode() not in decoded and SECRET[-6:].encode() not in decoded


def test_basic_auth_header_hides_the_token_inside(red: Redactor) -> None:
    header = "Authorization: Basic " + base64.b64encode(f"x-access-token:{SECRET}".encode()).decode()
    assert red(header) == "Authorization: Basic ***"
    # the core alone, without the header's help
    assert MASK in red(base64.b64encode(f"x-access-token:{SECRET}".encode()).decode())


@pytest.mark.parametrize("value", ['we"ird\\pa ss/wörd→1', "p@ss:w/rd&x=y?", "tab\there-and-quote'"])
def test_url_encoded_and_json_escaped_forms(value: str) -> None:
    red = Redactor({"SOME_SECRET": value})
    for form in (
        quote(value, safe=""),
        quote_plus(value),
        quote(value, safe="").lower(),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    ):
        out = red(f"x {form} y")
        assert form not in out, form
    as_json = json.dumps({"v": value, "nested": [value]})
    assert value not in json.loads(red(as_json).replace(MASK, ""))["v"]
    assert red({"v": value}) == {"v": MASK}


# --- always on, whatever the environment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw123456@host:6379/0", "redis://:***@host:6379/0"),
        ("amqp://user:pw@host/vhost", "amqp://user:***@host/vhost"),
        ("https://oauth2:abcdef@github.com/a/b.git", "https://oauth2:***@github.com/a/b.git"),
        ("fatal: https://TOKEN@github.com/a/b", "fatal: https://***@github.com/a/b"),
        ("https://x1y2z3@host", "https://***@host"),
        ("ssh://git@github.com/a/b", "ssh://git@github.com/a/b"),
        ("GET /cb?code=1&access_token=abc.def&state=s", "GET /cb?code=1&access_token=***&state=s"),
        (
            "?token=abc&api_key=zz&apikey=q&key=k&password=p&secret=s",
            "?token=***&api_key=***&apikey=***&key=***&password=***&secret=***",
        ),
        ("sig=abc&signature=def&client_secret=ghi", "sig=***&signature=***&client_secret=***"),
        ("PASSWORD=hunter2 next", "PASSWORD=*** next"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ('{"authorization": "token abc123"}', '{"authorization": "token ***"}'),
        ("curl -H 'Bearer eyJhbGciOiJIUzI1NiJ9'", "curl -H 'Bearer ***'"),
        ("Basic dXNlcjpwYXNzd29yZA==", "Basic ***"),
        ("Basic authentication is fine", "Basic authentication is fine"),
        ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/services/***"),
    ],
)
def test_always_on_patterns(text: str, expected: str) -> None:
    assert Redactor({})(text) == expected


@pytest.mark.parametrize(
    "token",
    [
        GH,
        "gho_" + "x" * 36,
        "ghs_" + "Z9" * 18,
        "ghu_" + "a" * 30,
        "ghr_" + "b" * 40,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "sk-" + "A" * 48,
        "sk-proj-" + "abc123_-" * 5,
        "sk-ant-api03-" + "Q" * 40,
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAZZZZZZZZZZZZZZZZ",
        "xoxb-1234567890-0987654321-abcdef",
        "xoxp-12345678901",
        "AIza" + "S" * 35,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_token_shapes(token: str) -> None:
    red = Redactor({})
    for text in (token, f"export X={token}\n", f'"{token}"', f"use {token}, then"):
        out = red(text)
        assert token not in out and MASK in out, text
        assert token[-8:] not in out


def test_pem_private_key_block() -> None:
    pem = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQAAACBkZXZpY2U=\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    red = Redactor({})
    out = red(f"key:\n{pem}\nafter")
    assert "b3BlbnNz" not in out and "QyNTUx" not in out
    assert out == "key:\n-----BEGIN OPENSSH PRIVATE KEY-----***-----END OPENSSH PRIVATE KEY-----\nafter"
    # JSON-escaped, and cut short before its end
    assert "b3BlbnNz" not in red(json.dumps(pem))
    assert "b3BlbnNz" not in red(pem[:70])


def test_no_secret_no_change() -> None:
    red = Redactor({**ENV, "GH_TOKEN": GH})
    text = "Fix the flaky upload test in src/upload.py (see agent/orchestration/20261125-fix-main) → done ✓"
    assert red(text) == text


# --- containers and models -------------------------------------------------------------------------------


def test_containers_are_walked_and_other_types_kept(red: Redactor) -> None:
    data = {"a": f"x {SECRET}", "b": [SECRET, 3, None, (SECRET, 1.5)], "c": {"d": {"e": SECRET}}, SECRET: True}
    assert red(data) == {"a": "x ***", "b": ["***", 3, None, ("***", 1.5)], "c": {"d": {"e": "***"}}, "***": True}
    assert red(42) == 42 and red(None) is None and red(b"bytes") == b"bytes"


def test_redact_model_keeps_the_type(red: Redactor) -> None:
    dec = Decision(
        task=f"use {SECRET}", title=f"t {GH}", agent="claude-code", rationale="r", confidence=0.5, op_hash="h"
    )
    out = redact_model(dec, red)
    assert isinstance(out, Decision)
    assert out.task == "use ***" and out.title == "t ***" and out.confidence == 0.5
    ins = Insights(
        goals=[f"deploy with {SECRET}"],
        unfinished=[Unfinished(provider="claude", session_id="s", reason="error", last_prompt=GH)],
    )
    clean = redact_model(ins, red)
    assert clean.goals == ["deploy with ***"] and clean.unfinished[0].last_prompt == "***"


def test_default_redactor_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LATE_TOKEN", raising=False)
    assert default_redactor()("late-secret-value-1") == "late-secret-value-1"
    monkeypatch.setenv("LATE_TOKEN", "late-secret-value-1")
    assert default_redactor()("late-secret-value-1") == "***"
    first = default_redactor()
    assert default_redactor() is first  # cached while nothing relevant changes
    monkeypatch.setenv("UNRELATED_NAME", "whatever-value")
    assert default_redactor() is first


def test_a_megabyte_in_well_under_a_second() -> None:
    red = Redactor({**{f"S{i}_TOKEN": f"secret-number-{i:04d}-xyz" for i in range(40)}, "GH_TOKEN": GH})
    text = ("ordinary log line with words, paths /a/b/c.py and numbers 12345\n" * 16_000)[:1_000_000]
    text = text[:500_000] + " secret-number-0007-xyz " + text[500_000:] + GH
    t0 = time.perf_counter()
    out = red(text)
    elapsed = time.perf_counter() - t0
    assert "secret-number-0007-xyz" not in out and GH not in out
    assert elapsed < 1.0, elapsed


# --- split over two strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 4, 8, 12, len(SECRET) - 4, len(SECRET) - 1])
def test_a_known_value_split_over_two_strings(red: Redactor, cut: int) -> None:
    stream = red.stream()
    first = stream(f"the token is {SECRET[:cut]}")
    second = stream(f"{SECRET[cut:]} and more")
    shown = first + "|" + second
    assert SECRET not in first + second
    assert second.endswith(" and more")
    # of the value, at most 3 characters at either edge can show
    for i in range(len(SECRET) - 3):
        assert SECRET[i : i + 4] not in shown.replace("|", ""), SECRET[i : i + 4]


@pytest.mark.parametrize("cut", [4, 6, 10, 30])
def test_a_token_shape_split_over_two_strings(cut: int) -> None:
    stream = Redactor({}).stream()
    first = stream(f"push with {GH[:cut]}")
    second = stream(f"{GH[cut:]} now")
    assert first == "push with ***"
    assert second == "*** now"


def test_a_token_split_over_three_strings_and_interleaved_keys() -> None:
    stream = Redactor({}).stream()
    parts = [GH[:9], GH[9:20], GH[20:]]
    out = [stream({"text": p, "agent": "claude-code"}) for p in parts]
    assert [o["text"] for o in out] == [MASK, MASK, MASK]
    assert all(o["agent"] == "claude-code" for o in out)


def test_a_stream_leaves_ordinary_text_alone(red: Redactor) -> None:
    stream = red.stream()
    assert stream("Reading src/app.py") == "Reading src/app.py"
    assert stream("The tests pass.") == "The tests pass."


# --- properties -----------------------------------------------------------------------------------------------

_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 \n.,;/()→é", max_size=200)
_SECRET = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!%$#/+", min_size=6, max_size=40
)
_SEP = st.sampled_from([" ", "\n", "\t", "/", ":", "=", '"', "'", "(", ")", ",", ";", "&", "?"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_TEXT, after=_TEXT, secret=_SECRET, left=_SEP, right=_SEP)
def test_property_an_inserted_secret_never_shows(before: str, after: str, secret: str, left: str, right: str) -> None:
    assume(secret not in before and secret not in after and secret.lower() not in NOT_SECRET_VALUES)
    red = Redactor({"ANY_TOKEN": secret})
    out = red(before + left + secret + right + after)
    assert secret not in out
    out_b64 = red(before + " " + base64.b64encode(b"u:" + secret.encode()).decode() + " " + after)
    assert base64.b64encode(secret.encode()).decode()[:8] not in out_b64


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, secret=_SECRET)
def test_property_text_without_a_secret_comes_back_unchanged(text: str, secret: str) -> None:
    assume(secret not in text)
    assert Redactor({"ANY_TOKEN": secret, "GH_TOKEN": GH})(text) == text


@settings(max_examples=200, deadline=None)
@given(before=_TEXT, secret=_SECRET, cut=st.integers(min_value=1, max_value=39))
def test_property_a_split_secret_never_shows_whole(before: str, secret: str, cut: int) -> None:
    assume(cut < len(secret) and secret not in before and secret.lower() not in NOT_SECRET_VALUES)
    middle = secret[min(cut, 3) : -3]
    # What may show besides the secret's first characters: its middle must not be found there anyway
    # (a secret like "00000000" repeats its own start).
    assume(middle not in before + " " + secret[: min(cut, 3)] + " tail")
    stream = Redactor({"ANY_TOKEN": secret}).stream()
    first = stream(before + " " + secret[:cut])
    second = stream(secret[cut:] + " tail")
    assert secret not in first and secret not in second
    assert middle not in first + second or len(secret) <= 7


# --- logging -------------------------------------------------------------------------------------------------


def test_logging_filter_masks_message_args_and_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_TEST_TOKEN", "log-secret-4242")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    logger = logging.getLogger("test_redact_logging")
    logger.propagate = False
    handler = Keep()
    logger.addHandler(handler)
    try:
        install_logging_filter(logger)
        install_logging_filter(logger)  # once only
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        logger.warning("push to %s failed: %s", "https://u:log-secret-4242@h/r", "log-secret-4242")
        try:
            raise RuntimeError("boom log-secret-4242")
        except RuntimeError:
            logger.exception("crashed with %s", GH)
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "log-secret-4242" not in text and GH not in text
    assert "push to https://u:***@h/r failed: ***" in text
    assert "RuntimeError: boom ***" in text


# --- terminal control ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[31mred\x1b[0m text", "red text"),
        ("\x1b[2J\x1b[Hcleared", "cleared"),
        ("\x1b]52;c;ZXZpbCBjbGlwYm9hcmQ=\x07copied", "copied"),
        ("\x1b]52;c;ZXZpbA==\x1b\\copied", "copied"),
        ("\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ here", "click here"),
        ("\x9b2Jeight-bit", "eight-bit"),
        ("\x9d0;title\x9cafter", "after"),
        ("progress 10%\rprogress 99%", "progress 10%progress 99%"),
        ("bell\x07 and nul\x00 and bs\x08 and del\x7f", "bell and nul and bs and del"),
        ("\x1bPdevice control\x1b\\x", "x"),
        ("\x1b7saved\x1b8 \x1bc", "saved "),
        ("lone escape at the end \x1b", "lone escape at the end "),
        ("keeps\nnewlines\tand tabs → ünïcødé ✓ 🚀", "keeps\nnewlines\tand tabs → ünïcødé ✓ 🚀"),
    ],
)
def test_strip_control(raw: str, clean: str) -> None:
    assert strip_control(raw) == clean


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_property_strip_control_leaves_no_control_character(text: str) -> None:
    out = strip_control(text)
    assert not any((ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in out)
