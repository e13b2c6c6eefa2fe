"""The live cost estimate of a Claude Code run: each response priced at its own model, never going down,
and replaced by the CLI's own `total_cost_usd` once the `result` line arrives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestration.agents.base import RunTally
from orchestration.agents.claude import ClaudeStream
from orchestration.agents.prices import BUILTIN_PRICES, cost_usd, price_for
from orchestration.agents.process import Verdict

pytestmark = pytest.mark.timeout(30)

SESSION = "27756cac-91f3-4743-abb1-5376765b0fee"
OPUS = "claude-opus-4-1-20250805"  # priced as claude-opus-4: $15 in, $75 out, $1.50 cached per Mtok
HAIKU = "claude-haiku-4-5-20251001"  # priced as claude-haiku-4-5: $1 in, $5 out, $0.10 cached per Mtok


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def costs(self, *, estimated: bool | None = None) -> list[float]:
        return [
            d["cost_usd"]
            for k, d in self.events
            if k == "agent.usage" and (estimated is None or d["estimated"] is estimated)
        ]


def make_stream(max_cost_usd: float = 100.0) -> tuple[ClaudeStream, Recorder]:
    rec = Recorder()
    return ClaudeStream(rec, RunTally(), Path("/tmp/repo"), max_cost_usd, {}), rec


def usage(
    *,
    inp: int = 0,
    out: int = 0,
    read: int = 0,
    write: int | None = None,
    write_1h: int | None = None,
    write_5m: int | None = None,
) -> dict[str, Any]:
    """A usage object as the CLI writes it; the split is left out unless given (older CLIs omit it)."""
    u: dict[str, Any] = {
        "input_tokens": inp,
        "cache_creation_input_tokens": write if write is not None else (write_1h or 0) + (write_5m or 0),
        "cache_read_input_tokens": read,
        "output_tokens": out,
        "service_tier": "standard",
    }
    if write_1h is not None or write_5m is not None:
        u["cache_creation"] = {
            "ephemeral_1h_input_tokens": write_1h or 0,
            "ephemeral_5m_input_tokens": write_5m or 0,
        }
    return u


def assistant(mid: str, model: str, use: dict[str, Any], text: str = "ok") -> bytes:
    ev = {
        "type": "assistant",
        "message": {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": use,
            "context_management": None,
        },
        "parent_tool_use_id": None,
        "session_id": SESSION,
        "uuid": f"uuid-{mid}-{text}",
    }
    return json.dumps(ev).encode() + b"\n"


def result(total_cost_usd: float | None) -> bytes:
    ev: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 2000,
        "num_turns": 3,
        "result": "Done.",
        "stop_reason": "end_turn",
        "session_id": SESSION,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 6000,
            "cache_read_input_tokens": 15000,
            "output_tokens": 6000,
            "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        },
    }
    if total_cost_usd is not None:
        ev["total_cost_usd"] = total_cost_usd
    return json.dumps(ev).encode() + b"\n"


TURN = usage(inp=10, out=2000, read=5000, write=2000)
# opus: 10*15 + 2000*75 + 5000*1.5 + 2000*15*1.25 = 195150 / 1e6; haiku: 10 + 10000 + 500 + 2500 = 13010 / 1e6
OPUS_TURN = 0.19515
HAIKU_TURN = 0.01301


def test_mixed_models_are_each_priced_at_their_own_model_and_never_decrease() -> None:
    stream, rec = make_stream()
    for mid, model in (("msg_1", OPUS), ("msg_2", HAIKU), ("msg_3", OPUS)):
        assert stream.feed(assistant(mid, model, TURN)) == Verdict.CONTINUE
    live = rec.costs(estimated=True)
    assert live == pytest.approx([OPUS_TURN, OPUS_TURN + HAIKU_TURN, 2 * OPUS_TURN + HAIKU_TURN])
    assert live == sorted(live)
    assert stream.current_cost() == pytest.approx(2 * OPUS_TURN + HAIKU_TURN)
    t = stream.tally
    assert (t.input_tokens, t.output_tokens, t.cached_tokens, t.cache_write_tokens) == (30, 6000, 15000, 6000)


def test_message_without_model_falls_back_to_the_init_model() -> None:
    stream, _ = make_stream()
    stream.feed(json.dumps({"type": "system", "subtype": "init", "session_id": SESSION, "model": HAIKU}).encode())
    ev = json.loads(assistant("msg_1", HAIKU, TURN))
    del ev["message"]["model"]
    stream.feed(json.dumps(ev).encode())
    assert stream.current_cost() == pytest.approx(HAIKU_TURN)


def test_usage_repeated_on_two_lines_counts_once() -> None:
    stream, rec = make_stream()
    stream.feed(assistant("msg_1", OPUS, TURN, text="first block"))
    stream.feed(assistant("msg_1", OPUS, TURN, text="second block"))
    assert stream.current_cost() == pytest.approx(OPUS_TURN)
    assert rec.costs(estimated=True) == pytest.approx([OPUS_TURN])
    assert stream.tally.output_tokens == 2000


def test_latest_usage_of_a_message_replaces_the_earlier_one() -> None:
    stream, rec = make_stream()
    stream.feed(assistant("msg_1", HAIKU, usage(inp=10, out=1)))
    stream.feed(assistant("msg_1", HAIKU, usage(inp=10, out=2000)))
    assert stream.current_cost() == pytest.approx((10 * 1 + 2000 * 5) / 1e6)
    assert stream.tally.output_tokens == 2000
    # A smaller figure for the same message changes the token tally, never lowers the reported estimate.
    stream.feed(assistant("msg_1", HAIKU, usage(inp=10, out=5)))
    assert stream.tally.output_tokens == 5
    live = rec.costs(estimated=True)
    assert live == sorted(live)
    assert stream.current_cost() == pytest.approx((10 * 1 + 2000 * 5) / 1e6)


@pytest.mark.parametrize(
    ("use", "expected"),
    [
        (usage(write_1h=1000), 1000 * 15 * 2.0 / 1e6),
        (usage(write_5m=1000), 1000 * 15 * 1.25 / 1e6),
        (usage(write=1000), 1000 * 15 * 1.25 / 1e6),  # unsplit: a 5-minute write
        (usage(write_1h=600, write_5m=400), (600 * 15 * 2.0 + 400 * 15 * 1.25) / 1e6),
        (usage(write=1000, write_1h=0, write_5m=0), 1000 * 15 * 1.25 / 1e6),  # a total with an all-zero split
    ],
    ids=["1h", "5m", "unsplit", "mixed", "zero-split"],
)
def test_cache_writes_1h_at_twice_input_and_5m_at_one_and_a_quarter(use: dict[str, Any], expected: float) -> None:
    stream, _ = make_stream()
    stream.feed(assistant("msg_1", OPUS, use))
    assert stream.current_cost() == pytest.approx(expected)
    assert stream.tally.cache_write_tokens == 1000


def test_cost_usd_prices_1h_writes_above_5m_writes() -> None:
    price = BUILTIN_PRICES["claude-sonnet-4"]
    five = cost_usd(price, input_tokens=0, output_tokens=0, cached_tokens=0, cache_write=1_000_000)
    hour = cost_usd(price, input_tokens=0, output_tokens=0, cached_tokens=0, cache_write_1h=1_000_000)
    assert (five, hour) == pytest.approx((3.0 * 1.25, 3.0 * 2.0))


def test_cache_reads_are_cheaper_than_fresh_input() -> None:
    fresh, _ = make_stream()
    fresh.feed(assistant("msg_1", OPUS, usage(inp=10_000)))
    cached, _ = make_stream()
    cached.feed(assistant("msg_1", OPUS, usage(read=10_000)))
    assert cached.current_cost() < fresh.current_cost()
    assert (cached.current_cost(), fresh.current_cost()) == pytest.approx((10_000 * 1.5 / 1e6, 10_000 * 15 / 1e6))


@pytest.mark.parametrize("reported", [0.5, 0.1], ids=["above-estimate", "below-estimate"])
def test_result_total_cost_is_the_run_cost(reported: float) -> None:
    stream, rec = make_stream()
    for mid, model in (("msg_1", OPUS), ("msg_2", HAIKU), ("msg_3", OPUS)):
        stream.feed(assistant(mid, model, TURN))
    assert stream.feed(result(reported)) == Verdict.FINAL
    assert stream.current_cost() == pytest.approx(reported)
    assert stream.tally.cost_usd == pytest.approx(reported) and stream.tally.cost_reported is True
    assert rec.costs(estimated=False) == pytest.approx([reported])
    assert rec.costs()[-1] == pytest.approx(reported)


def test_result_without_total_cost_keeps_the_estimate() -> None:
    stream, rec = make_stream()
    stream.feed(assistant("msg_1", OPUS, TURN))
    stream.feed(result(None))
    assert stream.tally.cost_reported is False
    assert stream.current_cost() == pytest.approx(OPUS_TURN)
    assert rec.costs()[-1] == pytest.approx(OPUS_TURN)  # the closing figure does not drop to zero


def test_cost_limit_counts_every_message_at_its_own_price() -> None:
    # Re-pricing everything at the latest (cheap) model would slip under the cap; per-message pricing does not.
    stream, _ = make_stream(max_cost_usd=0.2)
    assert stream.feed(assistant("msg_1", OPUS, TURN)) == Verdict.CONTINUE
    assert stream.feed(assistant("msg_2", HAIKU, TURN)) == Verdict.STOP_COST


@pytest.mark.parametrize("bogus", [-5, True, "0.3", None, float("nan")])
def test_a_reported_cost_that_is_not_an_amount_is_ignored(bogus: object) -> None:
    """`total_cost_usd` of -5, true, a string or NaN is not a cost: the estimate stands."""
    stream, _ = make_stream()
    stream.feed(assistant("m1", "claude-sonnet-4-5", {"input_tokens": 1000, "output_tokens": 100}))
    before = stream.current_cost()
    stream.feed(
        json.dumps({"type": "result", "subtype": "success", "is_error": False, "total_cost_usd": bogus}).encode()
    )
    assert stream.current_cost() == before > 0


@pytest.mark.parametrize(
    ("model", "rates"),
    [
        ("claude-opus-5-5", (4.0, 20.0, 0.2)),  # Claude Code's default model, at its catalog's rates
        ("claude-opus-5-5[1m]", (4.0, 20.0, 0.2)),
        ("claude-opus-4-1-20250805", (15.0, 75.0, 1.5)),
        ("claude-sonnet-5-5", (2.0, 10.0, 0.1)),
        ("claude-unheard-of-9", (5.0, 25.0, 0.5)),  # a Claude model it does not know: its default rates
        ("some-other-model", (15.0, 75.0, 1.5)),  # nothing known: an expensive guess, so a cap is never undercounted
    ],
)
def test_models_are_priced_as_claude_code_prices_them(model: str, rates: tuple[float, float, float]) -> None:
    price = price_for(model, {})
    assert (price.input_per_mtok, price.output_per_mtok, price.cached_per_mtok) == rates
