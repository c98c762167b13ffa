"""Acceptance acts: the printable certificate of completion of a settled milestone."""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import AfterValidator

from backend.api.app_state import TokensDep
from backend.api.deps import ServicesDep, SessionDep
from backend.api.schemas import raw_body, refusals
from backend.escrows.acts import act_pdf, time_zone
from backend.i18n import negotiate
from backend.inputs import EscrowId, MilestoneIndex

router = APIRouter(prefix="/api/escrows", tags=["acts"])


def _known_zone(name: str | None) -> str | None:
    """`name` when it is an IANA zone (a ValueError, so 422 `invalid`, otherwise)."""
    if name is not None:
        time_zone(name)
    return name


Language = Annotated[
    str | None,
    Query(
        max_length=35,
        description="The act's language: `en`, `ru` or `es` (a region such as `ru-RU` counts "
        "as its language). Any other value is ignored and `Accept-Language` decides; English "
        "when nothing matches.",
        examples=["ru"],
    ),
]
Zone = Annotated[
    str | None,
    Query(
        max_length=64,
        description="The IANA time zone the act's times are written in (`Europe/Madrid`); "
        "UTC when absent. Every time also gives its unix seconds. 422 for an unknown zone.",
        examples=["Europe/Madrid"],
    ),
    AfterValidator(_known_zone),
]
AcceptLanguage = Annotated[
    str | None,
    Header(description="Picks the act's language (`en`, `ru`, `es`) when `lang` does not."),
]


@router.get(
    "/{escrow_id}/milestones/{milestone}/act.pdf",
    response_class=Response,
    responses={
        **raw_body("application/pdf", "The certificate of completion (shown inline)"),
        **refusals(404, 409, 422, 503),
    },
)
def get_act(
    escrow_id: EscrowId,
    milestone: MilestoneIndex,
    services: ServicesDep,
    session: SessionDep,
    tokens: TokensDep,
    lang: Language = None,
    tz: Zone = None,
    accept_language: AcceptLanguage = None,
) -> Response:
    """The certificate of completion of a settled milestone (PDF): parties, amount, rating,
    review with attachment digests, the client's signature and its recovered signer, the
    transaction and the split paid; 404 for an unknown escrow or milestone, 409 when the
    milestone is not settled. In English, Russian or Spanish (`lang`, else `Accept-Language`,
    else English; the answer's `Content-Language` names it), times in UTC or in the zone `tz`
    (422 for an unknown zone)."""
    locale = negotiate(accept_language, lang)
    zone: tzinfo = time_zone(tz)
    body, filename = act_pdf(session, services, tokens, escrow_id, milestone,
                             locale=locale, zone=zone)
    return Response(
        body,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="{filename}"',
            "Content-Language": locale,
            "Vary": "Accept-Language",
        },
    )
