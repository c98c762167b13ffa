"""Configuration from the environment (prefix ESCROW_), read once (DESIGN.md section 6)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESCROW_", extra="ignore")

    rpc_url: str = "http://127.0.0.1:8545"
    data_dir: Path = Path("var")
    database_url: str | None = None
    contract_address: str | None = None
    oracle_keystore: Path | None = None
    oracle_keystore_password: str | None = None
    relayer_keystore: Path | None = None
    relayer_keystore_password: str | None = None
    deployer_keystore: Path | None = None
    deployer_keystore_password: str | None = None
    confirmations: int = Field(default=0, ge=0)
    solc: Path | None = None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'escrow.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
