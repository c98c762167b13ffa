"""Configuration from the environment (prefix ESCROW_), read once (docs/interface.md section 6)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.inputs import parse_address, parse_host_list

#: pooled connections of an API process kept for `/api/health` and `/metrics`, which read the
#: database outside the admitted requests (`backend/api/admission.py`)
RESERVED_CONNECTIONS = 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESCROW_", extra="ignore")

    rpc_url: str = "http://127.0.0.1:8545"
    #: the JSON-RPC URL a wallet should add for this chain (`GET /api/config`); unset: `rpc_url`
    public_rpc_url: str | None = None
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
    #: blocks a sent transaction may stay unmined before its sender replaces it with higher fees
    #: (one priced under the next block's base fee is replaced at once)
    replace_after_blocks: int = Field(default=3, ge=1)
    #: the most a sender offers per gas (maxFeePerGas, or gasPrice on a chain without a base
    #: fee), in wei; replacements stop at it
    max_fee_per_gas: int = Field(default=500 * 10**9, ge=1)
    # gas caps of the senders (backend/outbox/sender.py): the call is simulated with at most this
    # much gas and signed with at most this gas limit (and never more than the block's); a call
    # that needs more fails its row, nothing signed. Measured costs in docs/performance.md.
    #: gas of a relayed `confirmWithSig` (measured 74,463 to 96,951 for a plain-key client and
    #: 109,596 for a 2-of-2 contract wallet crediting both sides; also the API's limit when it
    #: simulates a contract wallet's confirmation from the relayer's address)
    relay_max_gas: int = Field(default=200_000, ge=21_000)
    #: gas of the oracle's `reportBreach` (about 108,600 for an escrow's first report)
    report_max_gas: int = Field(default=200_000, ge=21_000)
    #: gas of the oracle's `finalizeBreach` (about 51,400)
    finalize_max_gas: int = Field(default=100_000, ge=21_000)
    # spend bounds of the relayer (backend/outbox/spend.py), in wei: mined transactions count
    # gasUsed x effectiveGasPrice, unmined ones gas limit x max fee per gas; unset: no bound
    #: the most the relayer spends for the confirmations of one escrow
    relay_max_spend_per_escrow: int | None = Field(default=None, ge=0)
    #: the most the relayer spends for the confirmations of one client (over all its escrows)
    relay_max_spend_per_client: int | None = Field(default=None, ge=0)
    #: the most the oracle spends (wei, counted the same way) on the reports and finalizations
    #: of one escrow; unset: no bound
    oracle_max_spend_per_escrow: int | None = Field(default=None, ge=0)
    #: blocks per eth_getLogs call of the indexer (halved while the node refuses a range)
    index_chunk_blocks: int = Field(default=2_000, ge=1)
    #: seconds between two syncs of the indexer worker
    index_poll_interval: float = Field(default=2.0, gt=0)
    #: /api/health is degraded when the index lags the confirmed head by more blocks than this
    index_max_lag: int = Field(default=50, ge=0)
    # worker leases (backend/outbox/owner.py): one active instance of each worker
    #: a worker whose lease another process holds waits as standby (True) or refuses to start
    #: (False, `sender_busy` / `worker_busy`); `escrow index|relay|oracle|webhooks` wait unless
    #: `--no-standby`, `escrow serve|up` refuse unless `--standby` or this is set
    worker_standby: bool = False
    #: seconds between two attempts of a standby worker to take its lease
    lease_poll_interval: float = Field(default=1.0, gt=0)
    #: seconds before a worker thread that stopped with an error is started again; doubles per
    #: failure in a row up to `worker_restart_max` (a worker that ran that long starts over)
    worker_restart_base: float = Field(default=1.0, gt=0)
    worker_restart_max: float = Field(default=60.0, gt=0)
    solc: Path | None = None
    # provider limits (every chain read; backend/chain/connect.py, bulk_rpc.py, logs.py)
    #: most calls per JSON-RPC batch; halved (and remembered) while the node refuses a batch
    rpc_batch_size: int = Field(default=500, ge=1)
    #: most blocks per eth_getLogs of any reader (unset: learned from the node's refusals)
    rpc_log_blocks: int | None = Field(default=None, ge=1)
    #: tries of one request the node rate-limits (HTTP 429, a rate-limit error code) or answers
    #: with 502/503/504, before it is `NodeUnavailable`
    rpc_max_attempts: int = Field(default=5, ge=1)
    #: first wait in seconds before trying again; doubles per attempt (with jitter)
    rpc_backoff_base: float = Field(default=0.25, gt=0)
    #: longest single wait in seconds, a node's Retry-After included
    rpc_backoff_max: float = Field(default=8.0, gt=0)
    #: seconds one JSON-RPC HTTP request may take (connect and read) before it fails; a timed
    #: out read is not sent again by the provider (the worker's next pass asks again)
    rpc_timeout: float = Field(default=10.0, gt=0)
    #: seconds /api/health and /metrics wait for the node before they answer without it
    #: ("node not answering"); the node's reads go on in the background
    health_node_timeout: float = Field(default=1.5, gt=0)
    # notifications (webhooks, Sign-In with Ethereum)
    #: the RFC 3986 authority sign-in messages must name; unset: the request's Host header
    siwe_domain: str | None = None
    #: seconds a sign-in nonce stays usable
    siwe_nonce_ttl: int = Field(default=600, gt=0)
    #: seconds before a delivered milestone's review window ends to send review_deadline_near
    webhook_review_lead_time: int = Field(default=86_400, ge=0)
    webhook_timeout: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    #: first retry delay in seconds; doubles per attempt up to webhook_backoff_max
    webhook_backoff_base: int = Field(default=30, ge=1)
    webhook_backoff_max: int = Field(default=3_600, ge=1)
    webhook_max_subscriptions: int = Field(default=20, ge=1)
    #: webhook targets allowed on a loopback, private or other non-public address, for
    #: development: comma-separated `host` or `host:port` (`127.0.0.1:9000,localhost,[::1]`),
    #: matched against the URL's host as written (backend/notify/egress.py); empty: none, on
    #: every chain (the development chain included)
    webhook_allow_hosts: str = ""
    # the KPI oracle (backend/oracle/)
    #: seconds: the shortest `period_seconds` a terms document may have when it is stored or
    #: prepared (422 `period_too_short`); terms already stored or committed with a shorter
    #: period are not evaluated (no findings, no reports; the views say why)
    min_period_seconds: int = Field(default=3_600, ge=1)
    # REST API
    #: escrows whose GET /api/escrows/{id} body is kept in memory between index updates (0: off)
    api_detail_cache_size: int = Field(default=4_096, ge=0)
    # capacity of one API process (backend/api/admission.py), set together: each admitted
    # request holds at most one pooled connection and one thread at a time, so with
    # db_pool_size >= api_max_concurrency + 2 (health and metrics) and api_threads above that no
    # request ever waits for a connection held by a request waiting for a thread
    #: connections of an API process's pool (the workers have a pool of their own)
    db_pool_size: int = Field(default=10, ge=3)
    #: seconds a request waits for a pooled connection before 503 `database_unavailable`
    db_pool_timeout: float = Field(default=5.0, gt=0)
    #: requests of one API process using the database at once; unset: db_pool_size - 2
    api_max_concurrency: int | None = Field(default=None, ge=1)
    #: seconds a request waits for one of those places before 503 `overloaded` (0: refused at
    #: once when all are taken)
    api_queue_timeout: float = Field(default=5.0, ge=0)
    #: threads of an API process's threadpool (sync routes and dependencies; anyio's default 40)
    api_threads: int = Field(default=40, ge=4)
    #: connections of the background workers' own pool (`escrow serve` threads, worker commands)
    worker_db_pool_size: int = Field(default=5, ge=1)
    #: the arbiter the pages offer for a new escrow (`GET /api/config`), EIP-55; unset: none
    default_arbiter: str | None = None
    # logs (backend/logs.py)
    #: `text`: one line `time level logger message` per record on stderr; `json`: one JSON
    #: object per line (`ts`, `level`, `logger`, `message` and the record's structured fields)
    log_format: Literal["text", "json"] = "text"
    #: the least severe level logged, in any case; one-shot commands (everything but the service
    #: and its workers) log WARNING and above unless this is set
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # the role commands of the command line (backend/cli/roles.py, keys.py)
    #: the running service the role commands talk to (`--api`)
    api_url: str = "http://127.0.0.1:8000"
    #: the password of the keystore a command unlocks (`--from`), for scripts; unset: asked
    keystore_password: str | None = None

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        """`json`, `JSON`, `info`, `Info` ... are all accepted."""
        if not isinstance(value, str):
            return value
        return value.lower() if info.field_name == "log_format" else value.upper()

    @field_validator("default_arbiter")
    @classmethod
    def _arbiter_is_an_address(cls, value: str | None) -> str | None:
        """An address in any valid case, kept EIP-55 (`inputs.parse_address`); a value that is
        no address stops the settings from loading."""
        return None if value is None or value == "" else parse_address("default_arbiter", value)

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _allow_hosts_are_hosts(cls, value: str) -> str:
        """Every entry a `host` or `host:port` (`inputs.parse_host_list`), else the settings
        do not load."""
        parse_host_list("webhook_allow_hosts", value)
        return value

    @model_validator(mode="after")
    def _capacity_fits(self) -> Settings:
        """The API's capacity settings fit together (see `api_concurrency`), else the settings
        do not load: a pool too small for the admitted requests, or too few threads for
        them, is what made requests wait 30 s for a connection (docs/performance.md, "Many
        clients at once")."""
        needed = self.api_concurrency + RESERVED_CONNECTIONS
        if needed > self.db_pool_size:
            raise ValueError(
                f"ESCROW_API_MAX_CONCURRENCY {self.api_concurrency} needs ESCROW_DB_POOL_SIZE "
                f"of at least {needed} (2 more for health and metrics), not {self.db_pool_size}"
            )
        if self.api_threads < needed:
            raise ValueError(
                f"ESCROW_API_THREADS {self.api_threads} is below the {needed} requests an API "
                "process admits at once (ESCROW_API_MAX_CONCURRENCY + 2)"
            )
        return self

    @property
    def api_concurrency(self) -> int:
        """Requests of one API process that use the database at once: `api_max_concurrency`,
        else `db_pool_size` - `RESERVED_CONNECTIONS`."""
        if self.api_max_concurrency is not None:
            return self.api_max_concurrency
        return max(1, self.db_pool_size - RESERVED_CONNECTIONS)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'escrow.db'}"

    @property
    def wallet_rpc_url(self) -> str:
        """The RPC URL wallets are told to add: `public_rpc_url`, else `rpc_url`."""
        return self.public_rpc_url or self.rpc_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
