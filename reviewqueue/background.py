"""The background work of a deployment, in one list: what ``reviewqueue worker`` runs,
and ``reviewqueue api`` / ``up`` beside the API unless given ``--no-background``.
Each job is safe with any number of processes (``jobs.py`` says how)."""

from __future__ import annotations

from . import audit, deadlines, jobs, notify, retention, webhooks


def all_jobs() -> list[jobs.Job]:
    return [
        webhooks.worker_job(),  # every process; rows split the work
        deadlines.deadline_job(),  # every process; row locks make each fallback happen once
        audit.seal_job(),  # one leader
        retention.purge_job(),  # one leader
        notify.alert_job(),  # one leader: alerts and the daily digest
    ]


def start(engine) -> jobs.Runner:
    return jobs.Runner(all_jobs(), engine).start()
