"""USD per million tokens, for agents that report tokens but not cost. The config's budget.prices wins."""

from __future__ import annotations

from orchestration.config import Price

BUILTIN_PRICES: dict[str, Price] = {
    "claude-opus-4": Price(input_per_mtok=15.0, output_per_mtok=75.0, cached_per_mtok=1.5),
    "claude-opus-4-5": Price(input_per_mtok=5.0, output_per_mtok=25.0, cached_per_mtok=0.5),
    "claude-sonnet-4": Price(input_per_mtok=3.0, output_per_mtok=15.0, cached_per_mtok=0.3),
    "claude-haiku-4-5": Price(input_per_mtok=1.0, output_per_mtok=5.0, cached_per_mtok=0.1),
    "claude-3-5-haiku": Price(input_per_mtok=0.8, output_per_mtok=4.0, cached_per_mtok=0.08),
    "gpt-5": Price(input_per_mtok=1.25, output_per_mtok=10.0, cached_per_mtok=0.125),
    "gpt-5-mini": Price(input_per_mtok=0.25, output_per_mtok=2.0, cached_per_mtok=0.025),
    "gpt-5-codex": Price(input_per_mtok=1.25, output_per_mtok=10.0, cached_per_mtok=0.125),
    "gpt-4.1": Price(input_per_mtok=2.0, output_per_mtok=8.0, cached_per_mtok=0.5),
    "o4-mini": Price(input_per_mtok=1.1, output_per_mtok=4.4, cached_per_mtok=0.275),
}
# When the model is unknown, assume an expensive one: the cap must not be undercounted.
FALLBACK_PRICE = Price(input_per_mtok=15.0, output_per_mtok=75.0, cached_per_mtok=1.5)


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
