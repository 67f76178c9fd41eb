"""Every command, registered on the app by importing its module, in the order ``--help``
lists them: getting started, running, the queues' work, governance."""

import importlib

for _name in (
    "setup",
    "servers",
    "queues",
    "ingest",
    "users",
    "tokens",
    "webhooks",
    "notify",
    "exports",
    "quality",
    "audit",
    "key",
):
    importlib.import_module(f"{__package__}.{_name}")
