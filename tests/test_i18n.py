"""`backend/web/i18n.py`: the language of a request, amounts in a token's units per locale, and
durations in words."""

from __future__ import annotations

import pytest

from backend.i18n import format_amount, format_duration, negotiate, supported


@pytest.mark.parametrize(
    ("accept_language", "requested", "expected"),
    [
        (None, None, "en"),
        ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", None, "ru"),  # a Russian browser
        ("de-DE,de;q=0.9,es;q=0.5,en;q=0.4", None, "es"),  # the best supported range wins
        ("en;q=0.2, ru;q=0.8", None, "ru"),  # by q-value, not by order
        ("es, ru", None, "es"),  # equal q: the header's order
        ("ru;q=0, es;q=0.1", None, "es"),  # q=0 excludes
        ("fr, de", None, "en"),  # nothing supported: English
        ("*", None, "en"),
        ("ru;q=abc", None, "en"),  # a malformed q-value counts as 0
        ("ru", "es", "es"),  # the switch beats the browser
        ("ru", "ES-mx", "es"),
        ("ru", "fr", "ru"),  # an unsupported choice is ignored
    ],
)
def test_negotiate_picks_the_choice_then_the_best_accept_language_range_then_english(
    accept_language: str | None, requested: str | None, expected: str
) -> None:
    assert negotiate(accept_language, requested) == expected


def test_supported_accepts_regions_and_underscores_only_of_the_three_languages() -> None:
    assert [supported(x) for x in ("ru_RU", "es-419", "EN", "pt", "", None)] == [
        "ru", "es", "en", None, None, None
    ]


@pytest.mark.parametrize(
    ("amount", "decimals", "symbol", "locale", "expected"),
    [
        (1_500_000_000_000_000_000, 18, "ETH", "en", "1.5 ETH"),
        (1_500_000_000_000_000_000, 18, "ETH", "ru", "1,5 ETH"),
        (1_250_750_000, 6, "USDC", "es", "1.250,75 USDC"),
        (1, 18, "ETH", "en", "0.000000000000000001 ETH"),  # never rounded
        (2**112 - 1, 18, "ETH", "en", "5,192,296,858,534,827.628530496329220095 ETH"),
        (0, 18, "ETH", "en", "0 ETH"),
        (42, 0, None, "en", "42"),
    ],
)
def test_format_amount_writes_exact_token_units_grouped_for_the_locale(
    amount: int, decimals: int, symbol: str | None, locale: str, expected: str
) -> None:
    assert format_amount(amount, decimals, symbol, locale).replace("\u00a0", " ") == expected


@pytest.mark.parametrize(
    ("seconds", "locale", "expected"),
    [
        (3 * 86_400, "en", "3 days"),
        (3 * 86_400, "ru", "3 дня"),
        (7_200, "es", "2 horas"),
        (90_000, "en", "1 day 1 hour"),  # exact, not rounded to "1 day"
        (30 * 86_400, "ru", "30 дней"),
        (61, "en", "1 minute 1 second"),
        (0, "en", "0 seconds"),
    ],
)
def test_format_duration_says_a_period_exactly_in_the_locale(
    seconds: int, locale: str, expected: str
) -> None:
    assert format_duration(seconds, locale) == expected
