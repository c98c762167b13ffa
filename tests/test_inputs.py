"""The parsers of outside values (`backend.inputs`): what each kind accepts, what it refuses and
with which error, and the pydantic types built on them."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError
from backend.inputs import (
    MAX_ESCROW_ID,
    MAX_KPI_MAGNITUDE,
    MAX_SAFE_JSON_INTEGER,
    UINT256_MAX,
    Address,
    Amount,
    EscrowId,
    MalformedValueError,
    MilestoneIndex,
    Uint256,
    UnixTime,
    describe,
    parse_address,
    parse_amount,
    parse_escrow_id,
    parse_hash,
    parse_kpi_value,
    parse_milestone,
    parse_time,
    parse_uint,
    with_field,
)

FEW = settings(max_examples=50, deadline=None)


# ------------------------------------------------------------------ uint256 and amounts


@FEW
@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_a_uint256_reads_the_same_as_a_decimal_string_and_as_a_json_integer(n: int) -> None:
    assert parse_uint("x", str(n)) == parse_uint("x", n) == n


@FEW
@given(st.integers(min_value=UINT256_MAX + 1, max_value=2**300) | st.integers(max_value=-1))
def test_integers_outside_uint256_are_out_of_range(n: int) -> None:
    for given_as in (n, str(n)):
        with pytest.raises(OutOfRangeError):
            parse_uint("x", given_as)


@pytest.mark.parametrize("value", ["1.5", "1e18", " 1", "0x10", "", "one", 1.0, 1e18, True, None,
                                   [1], {"n": 1}])
def test_anything_but_decimal_digits_or_a_json_integer_is_malformed(value: Any) -> None:
    with pytest.raises(MalformedValueError) as caught:
        parse_uint("deadline", value)
    assert isinstance(caught.value, MalformedInputError) and isinstance(caught.value, ValueError)
    assert caught.value.message.startswith("malformed deadline: ")


def test_an_amount_as_a_json_number_above_2_53_is_refused_but_as_a_string_accepted() -> None:
    assert parse_amount("amount", MAX_SAFE_JSON_INTEGER) == MAX_SAFE_JSON_INTEGER
    with pytest.raises(OutOfRangeError) as caught:
        parse_amount("amount", MAX_SAFE_JSON_INTEGER + 2)
    assert "decimal strings" in caught.value.message
    assert parse_amount("amount", str(10**30)) == 10**30
    # a uint256 that is no amount (a deadline) keeps every JSON integer
    assert parse_uint("deadline", 2**60) == 2**60


@FEW
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_json_float_is_never_an_amount(value: float) -> None:
    with pytest.raises(MalformedValueError):
        parse_amount("amount", value)


# ------------------------------------------------------------------ ids and indexes


@FEW
@given(st.integers(min_value=1, max_value=MAX_ESCROW_ID))
def test_every_escrow_id_in_range_parses_from_an_integer_or_text(n: int) -> None:
    assert parse_escrow_id(n) == parse_escrow_id(str(n)) == n


@pytest.mark.parametrize("value", [0, -1, MAX_ESCROW_ID + 1, 2**64, "0", str(2**64)])
def test_an_escrow_id_no_escrow_can_have_is_not_found(value: Any) -> None:
    with pytest.raises(NotFoundError) as caught:
        parse_escrow_id(value)
    assert caught.value.message == f"unknown escrow {int(value)}"


@pytest.mark.parametrize("value", ["abc", "1.0", 1.0, True, None])
def test_an_escrow_id_that_is_no_integer_is_out_of_range_naming_the_field(value: Any) -> None:
    with pytest.raises(OutOfRangeError) as caught:
        parse_escrow_id(value, "escrowId")
    assert caught.value.field == "escrowId"


def test_milestone_indexes_run_from_0_to_63() -> None:
    assert [parse_milestone(m) for m in (0, "63")] == [0, 63]
    for bad in (-1, 64):
        with pytest.raises(NotFoundError, match=f"unknown milestone {bad}"):
            parse_milestone(bad)


# ------------------------------------------------------------------ addresses and hashes


def test_addresses_in_any_single_case_are_checksummed_and_a_bad_checksum_refused() -> None:
    checksummed = "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert parse_address("a", checksummed.lower()) == checksummed
    assert parse_address("a", "0x" + checksummed[2:].upper()) == checksummed
    broken = checksummed[:2] + checksummed[2].lower() + checksummed[3:]
    for bad in (broken, "0x1234", "ab" * 20, 42, None):
        with pytest.raises(MalformedValueError):
            parse_address("a", bad)


def test_hashes_are_32_bytes_of_hex_returned_lower_case() -> None:
    assert parse_hash("h", "0x" + "AB" * 32) == "0x" + "ab" * 32
    for bad in ("0x" + "ab" * 31, "ab" * 32, "0x" + "zz" * 32, 5):
        with pytest.raises(MalformedValueError):
            parse_hash("h", bad)


# ------------------------------------------------------------------ KPI values and times


@FEW
@given(st.floats(min_value=-MAX_KPI_MAGNITUDE, max_value=MAX_KPI_MAGNITUDE))
def test_finite_values_within_the_bound_are_kpi_values(value: float) -> None:
    assert parse_kpi_value("v", value) == value
    assert parse_kpi_value("v", repr(value)) == value


@pytest.mark.parametrize("value", [10**400, -(10**400), "1" * 400, 1e101, float("inf"),
                                   float("nan"), "-Infinity", "nan"])
def test_huge_or_non_finite_kpi_values_are_out_of_range(value: Any) -> None:
    with pytest.raises(OutOfRangeError) as caught:
        parse_kpi_value("value", value)
    assert len(caught.value.message) < 200  # a 400-digit value is shortened


@pytest.mark.parametrize("value", [True, None, "fast", [1]])
def test_kpi_values_that_are_no_number_are_malformed(value: Any) -> None:
    with pytest.raises(MalformedValueError) as caught:
        parse_kpi_value("value", value)
    assert caught.value.expected == "a number"


@FEW
@given(st.lists(st.floats(min_value=-MAX_KPI_MAGNITUDE, max_value=MAX_KPI_MAGNITUDE),
                min_size=1, max_size=50))
def test_a_sum_of_bounded_kpi_values_stays_finite(values: list[float]) -> None:
    parsed = [parse_kpi_value("v", v) for v in values]
    assert math.isfinite(math.fsum(parsed * 1000))


def test_times_are_unix_seconds_or_iso_8601_with_a_zone() -> None:
    assert parse_time("t", 1_700_000_000) == 1_700_000_000
    assert parse_time("t", "1700000000") == 1_700_000_000
    assert parse_time("t", 1_700_000_000.0) == 1_700_000_000
    assert parse_time("t", "2023-11-14T22:13:20Z") == 1_700_000_000
    assert parse_time("t", "2023-11-14T23:13:20+01:00") == 1_700_000_000
    for bad in ("2023-11-14T22:13:20", "2023-11-14T22:13:20.5Z", "yesterday", 1.5, True, None):
        with pytest.raises(MalformedValueError):
            parse_time("t", bad)
    for huge in (10**400, -1, 2**63):
        with pytest.raises(OutOfRangeError):
            parse_time("t", huge)


# ------------------------------------------------------------------ messages and types


def test_long_values_are_shortened_in_messages() -> None:
    assert describe(10**400) == "100000000000...(401 digits)"
    assert describe("x" * 100).endswith("...") and len(describe("x" * 100)) == 40
    assert describe(7) == "7"


def test_with_field_renames_a_parser_error_after_the_request_location() -> None:
    try:
        parse_uint("value", "1.5")
    except MalformedValueError as exc:
        renamed = with_field(exc, "milestone_amounts[0]")
    assert renamed.message == (
        "malformed milestone_amounts[0]: '1.5' is not a decimal integer string or a JSON integer"
    )
    unknown = NotFoundError("escrow", 0)
    assert with_field(unknown, "escrow_id") is unknown


class _Body(BaseModel):
    deadline: Uint256
    amounts: list[Amount] = []
    escrow: EscrowId = 1
    milestone: MilestoneIndex = 0
    owner: Address | None = None
    at: UnixTime = 0


def test_the_pydantic_types_parse_with_the_same_rules() -> None:
    body = _Body.model_validate({"deadline": "1900000000", "amounts": ["5", 6], "escrow": "7",
                                 "owner": "0x" + "ab" * 20, "at": "2023-11-14T22:13:20Z"})
    assert (body.deadline, body.amounts, body.escrow, body.at) == (1_900_000_000, [5, 6], 7,
                                                                   1_700_000_000)
    assert body.owner == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert _Body.model_validate({"deadline": 1_900_000_000}).deadline == 1_900_000_000


def test_a_refusal_inside_a_pydantic_type_keeps_the_parser_error_as_its_cause() -> None:
    with pytest.raises(ValidationError) as caught:
        _Body.model_validate({"deadline": 1.5, "amounts": [2**60]})
    causes = {err["loc"]: err["ctx"]["error"] for err in caught.value.errors()}
    assert isinstance(causes[("deadline",)], MalformedValueError)
    assert isinstance(causes[("amounts", 0)], OutOfRangeError)
    with pytest.raises(NotFoundError):  # a reference to nothing is not a validation error
        _Body.model_validate({"deadline": 1, "escrow": 0})
