"""Config numbers: a boolean or a numeric string is refused with a message naming the field; a float field
still takes an integer."""

from __future__ import annotations

import pytest

from orchestration.config import ConfigError, parse_config

NUMBERS = [
    ("budget", "max_turns", "an integer"),
    ("budget", "cycle_s", "an integer"),
    ("schedule", "jitter_s", "an integer"),
    ("budget", "max_cost_usd", "a number"),
]


def _errors(section: str, field: str, value: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"workspace": {"repo": "/x"}, section: {field: value}})
    return info.value.errors


@pytest.mark.parametrize(("section", "field", "kind"), NUMBERS)
@pytest.mark.parametrize("value", [True, False])
def test_boolean_is_refused(section: str, field: str, kind: str, value: bool) -> None:
    errors = _errors(section, field, value)
    shown = "true" if value else "false"
    assert errors == [f"{section}.{field}: expected {kind}, not a boolean (got {shown})"]


@pytest.mark.parametrize(("section", "field", "kind"), NUMBERS)
def test_numeric_string_is_refused(section: str, field: str, kind: str) -> None:
    errors = _errors(section, field, "5")
    assert errors == [f'{section}.{field}: expected {kind}, not a string (write the number without quotes) (got "5")']


def test_other_string_gets_no_quote_hint() -> None:
    assert _errors("budget", "max_cost_usd", "lots") == [
        'budget.max_cost_usd: expected a number, not a string (got "lots")'
    ]


@pytest.mark.parametrize(
    ("section", "field"), [("budget", "max_turns"), ("budget", "cycle_s"), ("schedule", "jitter_s")]
)
def test_float_is_refused_for_an_integer_field(section: str, field: str) -> None:
    assert _errors(section, field, 1.0) == [f"{section}.{field}: expected an integer (got 1.0)"]


def test_integers_still_accepted_in_float_fields() -> None:
    cfg = parse_config(
        {
            "workspace": {"repo": "/x"},
            "budget": {
                "max_cost_usd": 5,
                "daily_cost_usd": 30,
                "prices": {"m": {"input_per_mtok": 1, "output_per_mtok": 2, "cached_per_mtok": 0}},
            },
            "decision": {"min_confidence": 1, "llm": {"timeout_s": 30}},
        }
    )
    assert cfg.budget.max_cost_usd == 5.0 and isinstance(cfg.budget.max_cost_usd, float)
    assert cfg.budget.daily_cost_usd == 30.0
    assert cfg.budget.prices["m"].input_per_mtok == 1.0
    assert cfg.decision.min_confidence == 1.0
    assert cfg.decision.llm.timeout_s == 30.0


def test_integers_and_floats_where_expected() -> None:
    cfg = parse_config(
        {
            "workspace": {"repo": "/x"},
            "schedule": {"jitter_s": 0},
            "budget": {"cycle_s": 600, "max_turns": 3, "max_cost_usd": 0.25},
            "sessions": {"since_days": 3, "max_sessions": 10},
        }
    )
    assert (cfg.schedule.jitter_s, cfg.budget.cycle_s, cfg.budget.max_turns) == (0, 600, 3)
    assert cfg.budget.max_cost_usd == 0.25


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"budget": {"idle_timeout_s": True}}, "budget.idle_timeout_s"),
        ({"budget": {"daily_cost_usd": "25"}}, "budget.daily_cost_usd"),
        (
            {"budget": {"prices": {"m": {"input_per_mtok": True, "output_per_mtok": 1}}}},
            "budget.prices.m.input_per_mtok",
        ),
        ({"sessions": {"since_days": True}}, "sessions.since_days"),
        ({"sessions": {"max_sessions": "200"}}, "sessions.max_sessions"),
        ({"decision": {"min_confidence": True}}, "decision.min_confidence"),
        ({"decision": {"avoid_repeat_days": "7"}}, "decision.avoid_repeat_days"),
        ({"decision": {"llm": {"timeout_s": True}}}, "decision.llm.timeout_s"),
    ],
)
def test_every_config_number_is_strict(patch: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"workspace": {"repo": "/x"}, **patch})
    assert [line.split(":", 1)[0] for line in info.value.errors] == [path]


def test_defaults_and_round_trip_still_validate() -> None:
    cfg = parse_config({"workspace": {"repo": "/x"}})
    assert parse_config(cfg.model_dump(mode="json", by_alias=True)) == cfg
