"""Reviews and their attachments: media types from magic bytes, content-addressed storage with
limits, and the RFC 8785 canonical review whose keccak256 is the on-chain `commentHash`."""

from __future__ import annotations

from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest
from eth_utils import keccak
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from backend.confirmations.reviews import (
    MAX_ATTACHMENT_BYTES,
    MAX_CRITERION_NOTE_CHARS,
    NO_REVIEW_HASH,
    CriterionAnswer,
    UnsupportedMediaType,
    build_review,
    check_criteria_count,
    clean_name,
    load_review,
    normalize_media_type,
    parse_criteria,
    review_document,
    sniff_media_type,
    store_attachment,
    store_review,
)
from backend.db.models import Attachment, Review
from backend.db.session import session_factory, transaction
from backend.errors import MalformedInputError, NotFoundError, OutOfRangeError, TooLargeError

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "
GIF = b"GIF89a\x01\x00\x01\x00"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


# ------------------------------------------------------------------ media types


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (WEBP, "image/webp"),
        (GIF, "image/gif"),
        (b"GIF87a" + bytes(4), "image/gif"),
        (PDF, "application/pdf"),
        (b"\xef\xbb\xbf" + b"%PDF-1.7\n", "application/pdf"),  # junk before the header
        ("Accepté — 完成\r\n\tsigné\f".encode(), "text/plain"),
        (b"plain ascii", "text/plain"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),  # RIFF, but audio
        (b"PK\x03\x04\x14\x00", None),  # zip
        (b"text with a NUL\x00", None),
        (b"escape \x1b[31m", None),
        (b"\xff\xfe not utf-8", None),
        (b"", None),
    ],
)
def test_sniff_media_type_reads_the_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff_media_type(data) == expected


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("image/JPG; q=0.9", "image/jpeg"),
        (" Application/PDF ", "application/pdf"),
        ("application/x-pdf", "application/pdf"),
        (None, ""),
    ],
)
def test_normalize_media_type_drops_parameters_and_resolves_aliases(
    declared: str | None, expected: str
) -> None:
    assert normalize_media_type(declared) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\act.pdf", "act.pdf"),
        ("bell\x07\nname.txt", "bellname.txt"),
        ("..", "attachment"),
        ("", "attachment"),
        (None, "attachment"),
        ("é" * 300, "é" * 255),
    ],
)
def test_clean_name_keeps_a_safe_last_path_segment(name: str | None, expected: str) -> None:
    assert clean_name(name) == expected


# ------------------------------------------------------------------ canonical reviews


def test_review_hash_is_keccak_of_the_rfc8785_canonical_json() -> None:
    attachment = {"sha256": "ab" * 32, "name": "é.png", "media_type": "image/png", "size": 1_000}
    review = review_document("Très bien \U0001f44d\n\"ok\"", [attachment])
    expected = (
        b'{"attachments":[{"media_type":"image/png","name":"\xc3\xa9.png","sha256":"'
        + b"ab" * 32
        + b'","size":1000}],"comment":"Tr\xc3\xa8s bien \xf0\x9f\x91\x8d\\n\\"ok\\""}'
    )
    assert review.canonical == expected
    assert review.comment_hash == keccak(expected)
    assert review.document == {
        "comment": "Très bien \U0001f44d\n\"ok\"", "attachments": [attachment]
    }


def test_a_comment_alone_and_the_empty_review_hash_as_the_design_says() -> None:
    assert review_document("good work", []).comment_hash == keccak(
        b'{"attachments":[],"comment":"good work"}'
    )
    empty = review_document("", [])
    assert (empty.document, empty.canonical, empty.comment_hash) == (None, None, NO_REVIEW_HASH)
    assert empty.comment_hash_hex == "0x" + "00" * 32


def test_a_review_without_criteria_hashes_exactly_as_before_criteria_existed() -> None:
    # the commentHash of this review as the service computed it before reviews had criteria
    attachment = {"sha256": "ab" * 32, "name": "act.pdf", "media_type": "application/pdf",
                  "size": 1234}
    review = review_document("Delivered as agreed", [attachment])
    assert review.comment_hash_hex == (
        "0xd353e92df849531a0715c6d25a57726aa4ab4e99b009c5acfeba26a6c9a74921"
    )
    assert review.document is not None and "criteria" not in review.document
    assert review_document("fine", [], None).comment_hash_hex == (
        "0x1277ef0aa300d261d9db59c61914b2ae85050bb82433377fb011c0a0fde211cf"
    )


def test_criteria_join_the_review_document_in_order_with_a_note_only_when_given() -> None:
    answers = (CriterionAnswer(0, True), CriterionAnswer(1, False, "port 443 closed"))
    review = review_document("", [], answers)
    assert review.canonical == (
        b'{"attachments":[],"comment":"","criteria":[{"index":0,"met":true},'
        b'{"index":1,"met":false,"note":"port 443 closed"}]}'
    )
    assert review.comment_hash == keccak(review.canonical)
    # criteria alone make a review: its hash is not the zero hash
    assert review.comment_hash != NO_REVIEW_HASH
    assert review_document("", [], (CriterionAnswer(0, True),)).comment_hash != (
        review_document("", [], (CriterionAnswer(0, False),)).comment_hash
    )


def test_parse_criteria_reads_index_met_and_an_optional_note() -> None:
    assert parse_criteria(None) is None
    assert parse_criteria([]) == ()
    assert parse_criteria([{"index": 0, "met": True}, {"index": 1, "met": False, "note": "no",
                                                       }]) == (
        CriterionAnswer(0, True), CriterionAnswer(1, False, "no")
    )
    assert parse_criteria([{"index": 0, "met": True, "note": None}]) == (
        CriterionAnswer(0, True),
    )
    assert parse_criteria([{"index": 0, "met": False, "note": "é" * MAX_CRITERION_NOTE_CHARS}])


@pytest.mark.parametrize(
    ("raw", "error", "field"),
    [
        ({"index": 0, "met": True}, OutOfRangeError, "criteria="),
        (["met"], OutOfRangeError, "criteria[0]="),
        ([{"index": 0, "met": "yes"}], OutOfRangeError, "criteria[0].met="),
        ([{"index": 0, "met": 1}], OutOfRangeError, "criteria[0].met="),
        ([{"index": 0}], OutOfRangeError, "criteria[0].met="),
        ([{"index": 0, "met": True}, {"index": 2, "met": True}], OutOfRangeError,
         "criteria[1].index="),
        ([{"index": "0", "met": True}], OutOfRangeError, "criteria[0].index="),
        ([{"index": False, "met": True}], OutOfRangeError, "criteria[0].index="),
        ([{"met": True}], OutOfRangeError, "criteria[0].index="),
        ([{"index": 0, "met": True, "note": 5}], OutOfRangeError, "criteria[0].note="),
        ([{"index": 0, "met": True, "weight": 2}], OutOfRangeError, "criteria[0].weight="),
        ([{"index": 0, "met": True, "note": "x" * 501}], TooLargeError,
         "criteria[0].note (characters) is 501"),
        ([{"index": 0, "met": True, "note": "\ud800"}], MalformedInputError,
         "malformed criteria[0].note"),
    ],
    ids=["not-a-list", "entry-not-object", "met-string", "met-number", "met-missing",
         "index-skips", "index-string", "index-bool", "index-missing", "note-number",
         "unknown-key", "note-501", "note-surrogate"],
)
def test_parse_criteria_refuses_naming_the_field(
    raw: object, error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as refused:
        parse_criteria(raw)
    assert str(refused.value).startswith(field), str(refused.value)


def test_criteria_must_answer_each_acceptance_criterion_of_the_terms_once() -> None:
    two = ["reachable", "backed up"]
    check_criteria_count(None, two)  # criteria stay optional
    check_criteria_count(None, [])
    check_criteria_count((CriterionAnswer(0, True), CriterionAnswer(1, True)), two)
    with pytest.raises(OutOfRangeError, match="2 entries, one per acceptance criterion"):
        check_criteria_count((CriterionAnswer(0, True),), two)
    with pytest.raises(OutOfRangeError, match="list no acceptance_criteria"):
        check_criteria_count((CriterionAnswer(0, True),), [])
    with pytest.raises(OutOfRangeError, match="list no acceptance_criteria"):
        check_criteria_count((), [])


# ------------------------------------------------------------------ storage (both databases)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    factory = session_factory(engine)
    with factory() as s:
        yield s


def _count(session: Session, model: type[Attachment] | type[Review]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_store_attachment_writes_it_under_its_sha256_once(engine: Engine, tmp_path: Path) -> None:
    factory = session_factory(engine)
    with transaction(factory) as s:
        row, created = store_attachment(
            s, tmp_path, PDF, name="act.pdf", declared_type="application/pdf", now=1_700
        )
        assert created
    digest = sha256(PDF).hexdigest()
    assert (row.sha256, row.name, row.media_type, row.size, row.created_at) == (
        digest, "act.pdf", "application/pdf", len(PDF), 1_700
    )
    assert (tmp_path / "attachments" / digest).read_bytes() == PDF
    with transaction(factory) as s:
        again, created = store_attachment(s, tmp_path, PDF, name="other.pdf", declared_type=None)
        assert not created
        assert again.name == "act.pdf"
        assert _count(s, Attachment) == 1
    assert [p.name for p in (tmp_path / "attachments").iterdir()] == [digest]


@pytest.mark.parametrize(
    ("data", "declared", "error"),
    [
        (PNG + bytes(MAX_ATTACHMENT_BYTES), "image/png", TooLargeError),
        (PNG, "application/pdf", UnsupportedMediaType),
        (PNG, "image/svg+xml", UnsupportedMediaType),
        (b"\x00\x01\x02binary", "application/octet-stream", UnsupportedMediaType),
        (b"", None, OutOfRangeError),
    ],
    ids=["over-10-MiB", "declared-pdf", "declared-svg", "unknown-bytes", "empty"],
)
def test_store_attachment_refuses_and_keeps_nothing(
    session: Session, tmp_path: Path, data: bytes, declared: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store_attachment(session, tmp_path, data, name="x", declared_type=declared)
    assert _count(session, Attachment) == 0
    assert not (tmp_path / "attachments").exists()


def test_store_attachment_accepts_a_text_file_declared_as_another_text_type(
    session: Session, tmp_path: Path
) -> None:
    csv = b"a,b\n1,2\n"
    row, _ = store_attachment(session, tmp_path, csv, name="m.csv", declared_type="text/csv")
    assert row.media_type == "text/plain"


def test_build_review_binds_the_stored_attachments_in_the_given_order(
    session: Session, tmp_path: Path
) -> None:
    png, _ = store_attachment(session, tmp_path, PNG, name="b.png", declared_type="image/png")
    pdf, _ = store_attachment(session, tmp_path, PDF, name="a.pdf", declared_type=None)
    review = build_review(session, "ok", ("0x" + pdf.sha256.upper(), png.sha256))
    assert review.document == {
        "comment": "ok",
        "attachments": [
            {"sha256": pdf.sha256, "name": "a.pdf", "media_type": "application/pdf",
             "size": len(PDF)},
            {"sha256": png.sha256, "name": "b.png", "media_type": "image/png", "size": len(PNG)},
        ],
    }
    assert review.comment_hash == keccak(review.canonical or b"")
    assert build_review(session, "", ()).comment_hash == NO_REVIEW_HASH


@pytest.mark.parametrize(
    ("comment", "digests", "error"),
    [
        ("x" * 2_001, (), TooLargeError),
        ("\ud800", (), MalformedInputError),
        ("", tuple(f"{i:064x}" for i in range(11)), TooLargeError),
        ("", ("0x1234",), OutOfRangeError),
        ("", ("g" * 64,), OutOfRangeError),
        ("", ("ab" * 32, "AB" * 32), OutOfRangeError),
        ("", ("ab" * 32,), NotFoundError),
    ],
    ids=["comment-2001", "surrogate", "11-attachments", "short", "not-hex", "twice", "unknown"],
)
def test_build_review_refuses(
    session: Session, comment: str, digests: tuple[str, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build_review(session, comment, digests)


def test_a_comment_of_2000_characters_is_within_the_limit(session: Session) -> None:
    assert build_review(session, "€" * 2_000, ()).document == {"comment": "€" * 2_000,
                                                              "attachments": []}


def test_store_review_keeps_the_canonical_text_once_and_serves_it_back(engine: Engine) -> None:
    factory = session_factory(engine)
    review = review_document("fine", [])
    with transaction(factory) as s:
        assert store_review(s, review, now=5) == review.comment_hash_hex
        assert store_review(s, review, now=6) == review.comment_hash_hex
        assert store_review(s, review_document("", [])) is None
    with transaction(factory) as s:
        assert _count(s, Review) == 1
        row = s.get(Review, review.comment_hash_hex)
        assert row is not None
        assert (row.canonical, row.created_at) == ('{"attachments":[],"comment":"fine"}', 5)
        assert load_review(s, review.comment_hash_hex.upper().replace("0X", "0x")) == {
            "comment": "fine", "attachments": []
        }
        assert load_review(s, "0x" + "99" * 32) is None
