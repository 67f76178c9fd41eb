"""Queues: their settings and counts."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ... import agreement, field_quality, quality, queues, review
from ...schemas import ItemOut, Moment, QueueOut, QueueSettings, Text
from ...vocab import Scope
from ..deps import Caller, Engine, QueueName
from ..errors import V1_ERRORS

router = APIRouter(prefix="/v1/queues", tags=["queues"], responses=V1_ERRORS)


@router.get("", response_model=list[QueueOut])
def list_queues(who: Caller, engine: Engine):
    who.require(Scope.READ)
    return queues.overview(engine=engine, only=who.allowed_queues())


@router.put("/{name}", response_model=QueueOut, responses={201: {"description": "Created"}})
def put_queue(name: QueueName, body: QueueSettings, who: Caller, engine: Engine):
    who.require(Scope.ADMIN)
    who.require_queue(name)
    _, created = queues.upsert(name, body, actor=who.audit_actor, engine=engine)
    out = queues.overview(engine=engine, only=[name])[0]
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/{name}/quality/fields", response_model=list[field_quality.FieldQuality])
def get_field_quality(
    name: QueueName,
    who: Caller,
    engine: Engine,
    target_error: float | None = Query(None, gt=0, lt=1, description="Error a field may have, e.g. 0.02"),
    confidence_level: float = Query(0.95, ge=0.5, lt=1),
):
    """Structured outputs: accuracy, the error of confident (auto-accepted) occurrences,
    reliability and threshold advice per field path."""
    who.require(Scope.READ)
    who.require_queue(name)
    return field_quality.report(
        name, target_error=target_error, confidence_level=confidence_level, engine=engine
    )


@router.get("/{name}/quality", response_model=quality.QualityReport)
def get_quality(
    name: QueueName,
    who: Caller,
    engine: Engine,
    target_error: float | None = Query(
        None, gt=0, lt=1, description="Error rate the unreviewed traffic may have, e.g. 0.02"
    ),
    confidence_level: float = Query(0.95, ge=0.5, lt=1),
    since: Moment | None = Query(None, description="Items that arrived at or after (ISO 8601)"),
    until: Moment | None = Query(None, description="Items that arrived before (ISO 8601)"),
    model_version: Text | None = Query(None, max_length=256),
    predicted_label: Text | None = Query(None, max_length=256),
):
    """How wrong the unreviewed traffic is, calibration, the threshold trade-off and a
    recommendation (docs/quality.md)."""
    who.require(Scope.READ)
    who.require_queue(name)
    return quality.report(
        name,
        since=since,
        until=until,
        model_version=model_version,
        predicted_label=predicted_label,
        target_error=target_error,
        confidence_level=confidence_level,
        engine=engine,
    )


@router.get("/{name}/disputes", response_model=list[ItemOut])
def get_disputes(name: QueueName, who: Caller, engine: Engine, limit: int = Query(100, ge=1, le=1000)):
    """Items whose reviewers disagree, oldest first, each with every decision (``reviews``)."""
    who.require(Scope.READ)
    who.require_queue(name)
    queues.get(name, engine=engine)
    return review.disputes(name, limit=limit, engine=engine)


@router.get("/{name}/agreement", response_model=agreement.AgreementReport)
def get_agreement(
    name: QueueName,
    who: Caller,
    engine: Engine,
    since: Moment | None = Query(None, description="Decisions made at or after (ISO 8601)"),
    until: Moment | None = Query(None, description="Decisions made before (ISO 8601)"),
    confidence_level: float = Query(0.95, ge=0.5, lt=1),
):
    """Percent agreement and Krippendorff's alpha with bootstrap intervals, and each
    reviewer's figures (decisions, median seconds, agreement with the final decision,
    overturned by adjudication, today and this week)."""
    who.require(Scope.READ)
    who.require_queue(name)
    return agreement.report(name, since=since, until=until, confidence_level=confidence_level, engine=engine)
