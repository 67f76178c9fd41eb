"""Configuration, from environment variables prefixed ``REVIEWQUEUE_`` (or a .env file)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REVIEWQUEUE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///data/reviewqueue.db"
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
    #: Failed sign-ins allowed per user name within ``signin_window_seconds``.
    signin_attempts: int = 5
    signin_window_seconds: int = 300


@lru_cache
def get_settings() -> Settings:
    return Settings()
