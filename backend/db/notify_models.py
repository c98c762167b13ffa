"""The table notifications add (migration 0002): sign-in nonces. Subscriptions and deliveries
live in backend.db.models (`WebhookSubscription`, `WebhookDelivery`)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db.models import Base


class SiweNonce(Base):
    """A Sign-In with Ethereum nonce this service issued: usable once, until `expires_at`."""

    __tablename__ = "siwe_nonce"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued_at: Mapped[int]
    expires_at: Mapped[int] = mapped_column(index=True)
    used_at: Mapped[int | None]
