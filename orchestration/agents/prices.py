"""USD per million tokens, for agents that report tokens but not cost. The config's budget.prices wins."""

from __future__ import annotations

from orchestration.config import Price


def _p(input_per_mtok: float, output_per_mtok: float, cached_per_mtok: float) -> Price:
    return Price(input_per_mtok=input_per_mtok, output_per_mtok=output_per_mtok, cached_per_mtok=cached_per_mtok)


# Claude models at the rates Claude Code itself prices them with (its built-in model catalog, 2.1.328), so
# that a live estimate adds up to the `total_cost_usd` the CLI reports at the end: cache reads at the cached
# rate, cache writes at 1.25x (5 minutes) or 2x (1 hour) the input rate, as its catalog has them.
CLAUDE_PRICES: dict[str, Price] = {
    "claude-3-5-haiku": _p(0.8, 4.0, 0.08),
    "claude-haiku-4-5": _p(1.0, 5.0, 0.1),
    "claude-haiku-5-5": _p(0.1, 0.5, 0.01),  # its prompts above 100k tokens cost 5x: counted at this rate
    "claude-3-5-sonnet": _p(3.0, 15.0, 0.3),
    "claude-3-7-sonnet": _p(3.0, 15.0, 0.3),
    "claude-sonnet-4": _p(3.0, 15.0, 0.3),
    "claude-sonnet-5": _p(2.0, 10.0, 0.2),
    "claude-sonnet-5-5": _p(2.0, 10.0, 0.1),
    "claude-opus-4": _p(15.0, 75.0, 1.5),
    "claude-opus-4-5": _p(5.0, 25.0, 0.5),
    "claude-opus-4-6": _p(5.0, 25.0, 0.5),
    "claude-opus-4-7": _p(5.0, 25.0, 0.5),
    "claude-opus-4-8": _p(5.0, 25.0, 0.5),
    "claude-opus-5": _p(5.0, 25.0, 0.5),
    "claude-opus-5-5": _p(4.0, 20.0, 0.2),
    "claude-fable-5": _p(10.0, 50.0, 1.0),
    "claude-fable-5-1": _p(10.0, 50.0, 0.25),
    "claude-fable-5-2": _p(8.0, 40.0, 0.2),
    "claude-mythos-5": _p(10.0, 50.0, 1.0),
    "claude-mythos-5-1": _p(10.0, 50.0, 0.25),
    "claude-mythos-5-2": _p(8.0, 40.0, 0.2),
}
# A Claude model the catalog above does not know: Claude Code prices it at these rates.
CLAUDE_DEFAULT_PRICE = _p(5.0, 25.0, 0.5)

BUILTIN_PRICES: dict[str, Price] = {
    **CLAUDE_PRICES,
    "gpt-5": _p(1.25, 10.0, 0.125),
    "gpt-5-mini": _p(0.25, 2.0, 0.025),
    "gpt-5-codex": _p(1.25, 10.0, 0.125),
    "gpt-4.1": _p(2.0, 8.0, 0.5),
    "o4-mini": _p(1.1, 4.4, 0.275),
}
# When the model is unknown, assume an expensive one: the cap must not be undercounted.
FALLBACK_PRICE = _p(15.0, 75.0, 1.5)


def price_for(model: str | None, overrides: dict[str, Price]) -> Price:
    if model:
        if model in overrides:
            return overrides[model]
        if model in BUILTIN_PRICES:
            return BUILTIN_PRICES[model]
        # Dated or suffixed names ("claude-sonnet-4-5-20250929") match their family, longest first.
        for name in sorted(BUILTIN_PRICES, key=len, reverse=True):
            if model.startswith(name):
                return BUILTIN_PRICES[name]
        if model.startswith("claude-"):
            return CLAUDE_DEFAULT_PRICE
    return FALLBACK_PRICE


def cost_usd(
    price: Price,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    cache_write: int = 0,
    cache_write_1h: int = 0,
) -> float:
    """Tokens priced at one model's rates. `input_tokens` excludes cached input; `cached_tokens` (cache reads)
    are billed at the cached rate; `cache_write` (5-minute cache writes) at 1.25x input and `cache_write_1h`
    (1-hour cache writes) at 2x input, as Anthropic bills them."""
    return (
        input_tokens * price.input_per_mtok
        + output_tokens * price.output_per_mtok
        + cached_tokens * price.cached_per_mtok
        + cache_write * price.input_per_mtok * 1.25
        + cache_write_1h * price.input_per_mtok * 2.0
    ) / 1_000_000
