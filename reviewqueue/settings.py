"""Configuration, from environment variables prefixed ``REVIEWQUEUE_`` (or a .env file)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REVIEWQUEUE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///data/reviewqueue.db"
    #: PostgreSQL connections each process keeps open, and how many more it may open
    #: under load; the API also keeps one for /readyz. Every process of a deployment
    #: counts against the server's max_connections (docs/deployment.md has the sum).
    db_pool_size: int = Field(default=5, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)
    #: Seconds a request waits for a database connection before it is answered 503 with
    #: Retry-After (never a 500).
    db_pool_timeout: float = Field(default=5.0, gt=0, le=300)
    #: Set when PostgreSQL is reached through a pooler in transaction mode (PgBouncer
    #: ``pool_mode = transaction``): psycopg then prepares no statements on the server,
    #: which such a pooler cannot keep for a client (docs/deployment.md).
    db_transaction_pooling: bool = False
    #: Seconds an API process keeps serving after SIGTERM while /readyz says 503, so a
    #: load balancer stops sending before the process stops listening (api/server.py).
    drain_seconds: float = Field(default=5.0, ge=0, le=600)
    #: Addresses or CIDRs of the reverse proxies and load balancers in front of the API
    #: and the review app, comma-separated: only from them is X-Forwarded-For believed
    #: (netaddr.py). Empty: the peer address is the client's.
    trusted_proxies: str = ""
    #: Largest accepted item (input + output + context + metadata, as JSON), in bytes.
    max_item_bytes: int = 1024 * 1024
    #: Largest accepted HTTP request body, in bytes (a batch of up to 1,000 items).
    max_request_bytes: int = 32 * 1024 * 1024
    max_batch_items: int = 1000
    export_dir: str = "data/exports"
    #: Processes that read and convert a large export's slices in parallel (1: all in
    #: the exporting process). Each adds about 150 MB while it runs.
    export_workers: int = Field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)), ge=1, le=64)
    #: Seconds a reviewer may undo their last decision.
    undo_seconds: int = 30
    #: Review app sessions end after this many minutes without a run, and this many
    #: hours after sign-in, whichever comes first.
    ui_idle_minutes: int = Field(default=60, ge=1)
    ui_session_hours: int = Field(default=12, ge=1)
    #: The review app holds an item under a lease this short (renewed every 30 s while the
    #: page is open), so an item whose reviewer closed the browser is back in the queue
    #: soon; queues with a shorter lease keep theirs.
    ui_lease_seconds: int = Field(default=120, ge=30)
    #: Queue counts and backlog ages shown by the app, the API and /metrics are at most
    #: this many seconds old (computing them scans an index; see cache.py). 0: always fresh.
    counts_max_age: float = Field(default=2.0, ge=0)
    #: Host names the review app answers to (DNS-rebinding protection), comma-separated:
    #: add your public name when you deploy behind a proxy.
    allowed_hosts: str = "localhost,127.0.0.1"
    #: Seconds a client has to send a whole request body before the API gives up (408).
    body_timeout_seconds: float = Field(default=15.0, gt=0)
    #: Require an API token (read scope) for /metrics.
    metrics_token: bool = False
    #: The server's secret key (keys.py): from this variable, or else from this file,
    #: created on first use.
    secret_key: str | None = None
    secret_key_file: str = "data/secret.key"
    #: Keys retired by ``reviewqueue key rotate``, comma-separated: kept only to verify
    #: the audit seals made with them (also read from ``<secret_key_file>.retired``).
    secret_keys_retired: str | None = None
    #: Where this host appends the head of every audit seal it makes, outside the
    #: database (audit.py); default: beside a SQLite file, else data/audit-anchor.log.
    audit_anchor_file: str | None = None
    #: Seconds each of connecting to a webhook receiver, sending and reading its answer
    #: may take (webhooks.py).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: Allow webhooks to loopback, private and link-local addresses (egress.py).
    webhook_allow_private: bool = False
    #: The window in which failed sign-ins are counted, and the longest back-off (users.py).
    signin_window_seconds: int = 300
    #: The review app's address as people open it: links in alert messages (notify.py).
    public_url: str = "http://localhost:8501"
    #: Alerts (notify.py): after a message about a rule of a queue, none about the same
    #: rule and queue for this long, even if it clears and fires again.
    alert_cooldown_seconds: int = Field(default=3600, ge=0)
    #: The daily digest goes out at the first check after this hour (UTC, 0-23).
    digest_hour: int = Field(default=8, ge=0, le=23)
    #: E-mail alerts: the SMTP server and how to log in (STARTTLS when smtp_starttls;
    #: port 465 speaks TLS from the start).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "reviewqueue@localhost"
    smtp_starttls: bool = True


@lru_cache
def get_settings() -> Settings:
    return Settings()
