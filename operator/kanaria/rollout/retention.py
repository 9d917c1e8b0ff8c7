"""Retention: retired revisions are scaled down after a delay, once the router sends them
nothing (no weight or mirror read back, and the gateway has applied the route); the oldest
beyond ``rollback.revisionHistoryLimit`` are deleted."""

from __future__ import annotations

from kanaria.api.durations import parse_duration
from kanaria.rollout.clock import seconds_since
from kanaria.rollout.cycle import FAST, Cycle

__all__ = ["retention"]


def retention(c: Cycle) -> None:
    st, spec = c.st, c.spec
    serving = {st.stable_revision, st.canary_revision, st.prior_revision, *(a.revision for a in st.arms)} - {None}
    for rev in c.obs.workloads:
        if rev not in serving and rev not in st.retired:
            c.retire(rev)  # found without a record (for example after a crash): retire it
    delay = parse_duration(spec.rollback.scale_down_delay)
    for rev, at in st.retired.items():
        if rev in serving:
            continue
        if seconds_since(at, c.now) < delay and rev in c.obs.workloads:
            c.d.replicas.setdefault(rev, spec.replicas)
            c.requeue(delay - seconds_since(at, c.now))
        elif (running := c.obs.workloads[rev].replicas if rev in c.obs.workloads else 0) > 0 and c.routed_to(rev):
            # Draining: the route as read back (or as the gateway still applies it) may send
            # it traffic. Its replicas stay as they are until the router confirms it sends nothing.
            c.d.replicas.setdefault(rev, running)
            c.requeue(FAST)
        else:
            c.d.replicas[rev] = 0
    kept = sorted(
        (r for r in st.retired if r not in serving),
        key=lambda r: st.retired[r],
        reverse=True,
    )
    for rev in kept[spec.rollback.revision_history_limit :]:
        c.d.delete.append(rev)
        c.d.replicas.pop(rev, None)
    if c.d.delete:
        st.retired = {k: v for k, v in st.retired.items() if k not in c.d.delete}
