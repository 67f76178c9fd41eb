"""Quality: how wrong the unreviewed traffic is, whether confidence means anything,
where the threshold should be and what each choice costs in review (quality.py).

Charts are Altair (Vega-Lite): the text in them (model versions, reasons) is drawn as
SVG text, never as HTML or markdown.
"""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from reviewqueue import cache, clock, quality, queues
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui import session
from reviewqueue.ui.common import busiest_first, engine, plain
from reviewqueue.vocab import Role

#: Seconds a computed report is reused (a million items take about a second to count).
REPORT_MAX_AGE = 30.0
WINDOWS = {"Last 7 days": 7, "Last 30 days": 30, "Last 90 days": 90, "All time": None}


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _report(queue: str, days: int | None, version: str | None, target: float) -> quality.QualityReport:
    eng = engine()
    since = None
    if days is not None:  # whole hours, so the cache key holds for a while
        since = (clock.now() - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return cache.fresh(
        ("quality", str(eng.url), queue, since, version, target),
        REPORT_MAX_AGE,
        lambda: quality.report(queue, since=since, model_version=version, target_error=target, engine=eng),
    )


def render() -> None:
    st.header("Quality")
    names, first = busiest_first(queues.overview(engine=engine()))
    if not names:
        st.info("There are no queues yet.")
        return
    top = st.columns([2, 2, 2, 2])
    queue = top[0].selectbox("Queue", names, index=first, key="rq_quality_queue")
    window = top[1].selectbox("Items that arrived", list(WINDOWS), index=1, key="rq_quality_window")
    # In percent, as every figure on this page is.
    target = (
        top[2].number_input(
            "Target error of unreviewed outputs (%)",
            min_value=0.1,
            max_value=50.0,
            value=5.0,
            step=0.5,
            format="%.1f",
            key="rq_quality_target_pct",
            help="The share of wrong outputs you accept among those that go out without review, in percent.",
        )
        / 100
    )
    base = _report(queue, WINDOWS[window], None, target)
    versions = ["All versions"] + [v.model_version or "(none)" for v in base.by_model_version]
    picked = top[3].selectbox("Model version", versions, key="rq_quality_version")
    rep = base if picked == "All versions" else _report(queue, WINDOWS[window], picked, target)
    if rep.items == 0:
        st.info("No items arrived in this window.")
        return

    applied = st.session_state.pop("rq_quality_applied", None)
    if applied:
        st.success(applied)
    _headline(rep)
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Is the confidence honest?")
        st.altair_chart(_reliability_chart(rep), width="stretch")
        st.caption(
            "Observed accuracy in each confidence bin (weighted to the whole traffic) with its "
            f"{rep.confidence_level:.0%} interval; the dashed diagonal is a perfectly calibrated model. "
            "Bars: items per bin. Points below the diagonal: the model is over-confident."
        )
    with right:
        st.subheader("Where should the threshold be?")
        st.altair_chart(_tradeoff_chart(rep), width="stretch")
        st.caption(
            "Each point is a threshold from 0.50 to 0.99: the share of traffic reviewers would see "
            "against the error of what would go out unreviewed (upper bound of its interval). "
            "The red line is the target; the ringed point is the recommendation."
        )
    _advice(rep, queue, target)
    _forecast(rep)
    _versions(rep)
    _reasons(rep)
    for note in rep.notes:
        st.caption(note)


def _headline(rep: quality.QualityReport) -> None:
    auto = rep.auto_accepted_error
    c = st.columns(4)
    if auto.estimate is None:
        c[0].metric("Error of unreviewed outputs", "not enough evidence")
        c[0].caption(plain(auto.reason))
    else:
        c[0].metric("Error of unreviewed outputs", _pct(auto.estimate))
        c[0].caption(f"{_pct(auto.low)} to {_pct(auto.high)} · {auto.audited:,} audited of {auto.items:,}")
    acc = rep.accuracy
    c[1].metric("Accuracy of all traffic", _pct(acc.estimate) if acc.estimate is not None else "-")
    if acc.estimate is not None:
        c[1].caption(f"{_pct(acc.low)} to {_pct(acc.high)}")
    c[2].metric(
        "Calibration error (ECE)",
        _pct(rep.ece),
        help="Expected calibration error: how far the confidence is from the observed accuracy, "
        "averaged over confidence bins weighted by their items. 0% is a perfectly honest confidence; "
        "the chart below shows where the gap is.",
    )
    c[3].metric("Items · decided", f"{rep.items:,} · {rep.decided:,}")
    c[3].caption(f"threshold {rep.threshold:g} · audit rate {rep.audit_rate:g}")


def _reliability_chart(rep: quality.QualityReport) -> alt.VConcatChart:
    bins = pd.DataFrame([b.model_dump() for b in rep.reliability])
    bins["centre"] = (bins.confidence_low + bins.confidence_high) / 2
    bins["bin"] = bins.apply(lambda b: f"{b.confidence_low:.1f}-{b.confidence_high:.1f}", axis=1)
    scale = alt.Scale(domain=[0, 1])
    known = bins.dropna(subset=["accuracy"])
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray")
    diagonal = diagonal.encode(x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale))
    x = alt.X("centre:Q", title="confidence", scale=scale)
    tooltip = ["bin", "items", "decided", alt.Tooltip("accuracy:Q", format=".1%")]
    bars = alt.Chart(known).mark_rule(strokeWidth=2).encode(x=x, y=alt.Y("low:Q", scale=scale), y2="high:Q")
    points = (
        alt.Chart(known)
        .mark_point(filled=True, size=70)
        .encode(x=x, y=alt.Y("accuracy:Q", title="observed accuracy", scale=scale), tooltip=tooltip)
    )
    sizes = (
        alt.Chart(bins)
        .mark_bar()
        .encode(
            x=alt.X("confidence_low:Q", bin="binned", scale=scale, title="confidence"),
            x2="confidence_high:Q",
            y=alt.Y("items:Q", title="items"),
            tooltip=["bin", "items", "decided"],
        )
        .properties(height=90)
    )
    return alt.vconcat((diagonal + bars + points).properties(height=260), sizes)


def _tradeoff_chart(rep: quality.QualityReport) -> alt.LayerChart:
    rows = pd.DataFrame([r.model_dump() for r in rep.thresholds]).dropna(subset=["error_upper"])
    tooltip = [
        alt.Tooltip("threshold:Q", format=".2f"),
        alt.Tooltip("review_rate:Q", format=".0%", title="reviewed"),
        alt.Tooltip("expected_error:Q", format=".1%", title="error"),
        alt.Tooltip("error_upper:Q", format=".1%", title="upper bound"),
        alt.Tooltip("review_items_per_day:Q", format=",.0f", title="items/day"),
    ]
    x = alt.X("review_rate:Q", title="share of traffic reviewed", axis=alt.Axis(format="%"))
    y = alt.Y("error_upper:Q", title="error of unreviewed outputs (upper bound)", axis=alt.Axis(format="%"))
    if rows.empty:
        return alt.layer(
            alt.Chart(pd.DataFrame({"review_rate": [], "error_upper": []})).mark_line().encode(x=x, y=y)
        )
    curve = alt.Chart(rows).mark_line(point=True).encode(x=x, y=y, tooltip=tooltip)
    layers = [curve]
    if rep.target_error is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"target": [rep.target_error]}))
            .mark_rule(color="red")
            .encode(y="target:Q")
        )
    if rep.recommendation is not None:
        point = pd.DataFrame([rep.recommendation.model_dump()])
        layers.append(
            alt.Chart(point).mark_point(size=300, shape="circle", color="red", strokeWidth=3).encode(x=x, y=y)
        )
    return alt.layer(*layers).properties(height=350)


def _advice(rep: quality.QualityReport, queue: str, target: float) -> None:
    st.subheader("Recommendation")
    r = rep.recommendation
    if r is None:
        st.info(f"No threshold to recommend yet: {rep.recommendation_reason}")
    else:
        hours = f", about {r.reviewer_hours_per_day:,.1f} reviewer-hours" if r.reviewer_hours_per_day else ""
        st.success(
            f"Threshold {r.threshold:.2f}: the unreviewed outputs would be wrong {_pct(r.expected_error)} "
            f"of the time (at most {_pct(r.error_upper)}, {rep.confidence_level:.0%} confidence), and you "
            f"would review {_pct(r.review_rate, 0)} of traffic: about {r.review_items_per_day:,.0f} items a day"
            f"{hours}. The queue's threshold is {rep.threshold:g}."
        )
    labelled = [a for a in rep.label_thresholds]
    if labelled:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "label": a.label,
                        "items": a.items,
                        "threshold now": a.current_threshold,
                        "recommended": a.recommendation.threshold if a.recommendation else None,
                        "why not": a.reason or "",
                    }
                    for a in labelled
                ]
            ),
            hide_index=True,
        )
    if session.at_least(Role.ADMIN) and (r is not None or rep.suggested_label_thresholds()):
        if st.button("Apply recommended threshold", type="primary", key="rq_quality_apply"):
            try:
                q = quality.apply_recommendation(queue, target, actor=session.name(), engine=engine())
            except ReviewQueueError as exc:
                st.error(str(exc))
            else:
                cache.forget()
                # Drawn again from the start, so every figure above shows the new threshold.
                st.session_state["rq_quality_applied"] = (
                    f"{queue}: the threshold is now {q.threshold:g} (recorded in the audit log)."
                )
                st.rerun()


def _forecast(rep: quality.QualityReport) -> None:
    st.subheader("What each threshold costs")
    known = {round(r.threshold, 2): r for r in rep.thresholds}
    t = st.slider(
        "Threshold",
        min_value=0.50,
        max_value=0.99,
        value=min(max(round(rep.threshold, 2), 0.5), 0.99),
        step=0.01,
        key="rq_quality_whatif",
    )
    row = known[round(t, 2)]
    hours = (
        f", ~{row.reviewer_hours_per_day:,.1f} reviewer-hours"
        if row.reviewer_hours_per_day is not None
        else " (no review times recorded yet for hours)"
    )
    error = (
        f"; the rest would be wrong {_pct(row.expected_error)} of the time (at most {_pct(row.error_upper)})"
        if row.expected_error is not None
        else "; too little evidence above it to estimate the error of the rest"
    )
    st.text(
        f"At {t:.2f} you review {_pct(row.review_rate, 0)} of traffic: ~{row.review_items_per_day:,.0f} items a day"
        f"{hours}{error}."
    )
    table = pd.DataFrame(
        [
            {
                "threshold": r.threshold,
                "reviewed": r.review_rate,
                "error": r.expected_error,
                "upper bound": r.error_upper,
                "items/day": r.review_items_per_day,
                "reviewer-hours/day": r.reviewer_hours_per_day,
            }
            for r in rep.thresholds
            if round(r.threshold * 100) % 5 == 0
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "reviewed": st.column_config.NumberColumn(format="percent"),
            "error": st.column_config.NumberColumn(format="percent"),
            "upper bound": st.column_config.NumberColumn(format="percent"),
            "items/day": st.column_config.NumberColumn(format="%.0f"),
            "reviewer-hours/day": st.column_config.NumberColumn(format="%.1f"),
        },
    )


def _versions(rep: quality.QualityReport) -> None:
    st.subheader("By model version")
    rows = pd.DataFrame(
        [
            {
                "version": v.model_version or "(none)",
                "items": v.items,
                "decided": v.decided,
                "error": v.error.estimate,
                "low": v.error.low,
                "high": v.error.high,
                "first seen": v.first_seen,
                "last seen": v.last_seen,
                "drift": "worse than before" if v.drift else "",
            }
            for v in rep.by_model_version
        ]
    )
    if any(v.drift for v in rep.by_model_version):
        drifted = ", ".join(plain(v.model_version or "(none)") for v in rep.by_model_version if v.drift)
        st.warning(
            f"Drift: {drifted} is wrong more often than the version before it (intervals do not overlap)."
        )
    st.dataframe(
        rows.style.apply(lambda r: ["background-color: #fde2e1" if r["drift"] else "" for _ in r], axis=1),
        hide_index=True,
        column_config={
            **{c: st.column_config.NumberColumn(format="percent") for c in ("error", "low", "high")},
            "first seen": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "last seen": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "drift": st.column_config.TextColumn(width="medium"),
        },
    )


def _reasons(rep: quality.QualityReport) -> None:
    by_version = rep.reject_reasons["by_model_version"]
    if not by_version:
        return
    st.subheader("Reject reasons by version")
    data = pd.DataFrame(
        [
            {"version": version, "reason": reason, "rejections": n}
            for version, reasons in by_version.items()
            for reason, n in reasons.items()
        ]
    )
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("rejections:Q"),
            y=alt.Y("version:N", axis=alt.Axis(labelLimit=240)),
            color=alt.Color("reason:N", legend=alt.Legend(orient="bottom", columns=4, labelLimit=200)),
            tooltip=["version", "reason", "rejections"],
        )
        # Bars a readable thickness, plus room for the legend below them.
        .properties(height=60 + 36 * len(by_version))
    )
    st.altair_chart(chart, width="stretch")
