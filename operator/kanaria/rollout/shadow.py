"""The shadow strategy: mirror live traffic to the new revision (step 0 sets the mirror up),
judge it on the copy (step 1), and promote it only when every metric passes (step 2). It
serves no user before that: its weight stays 0 and its responses are discarded by the router."""

from __future__ import annotations

from datetime import timedelta

from kanaria.api.durations import parse_duration
from kanaria.rollout.clock import seconds_since, until_text
from kanaria.rollout.cycle import FAST, Cycle, summary
from kanaria.rollout.endings import judge, promote
from kanaria.rollout.steps import (
    advance,
    on_inconclusive,
    pace,
    show_pause,
    step_metrics,
    wait_for_canary_ready,
    warn_if_too_slow,
)

__all__ = ["progress_shadow"]


def progress_shadow(c: Cycle) -> None:
    st, spec = c.st, c.spec
    shadow_cfg = spec.strategy.shadow
    assert shadow_cfg is not None and st.stable_revision and st.canary_revision
    if st.current_step >= 2:
        promote(c, "every metric passed on mirrored traffic")
        return
    st.canary_weight = 0
    c.canary_traffic()
    if not c.ready(st.canary_revision):
        wait_for_canary_ready(c)
        return
    wanted = (st.canary_revision, shadow_cfg.percent)
    c.d.mirror = wanted
    if st.current_step == 0:
        if c.obs.mirror == wanted:
            advance(c, 3, f"mirroring {shadow_cfg.percent}% of live traffic to {st.canary_revision}")
        else:
            st.message = f"shadow: mirroring {shadow_cfg.percent}% of live traffic to {st.canary_revision}"
            c.requeue(FAST)
        return
    names = step_metrics(spec, None)
    verdicts = c.obs.verdicts
    assessment = judge(c, verdicts, names) if verdicts is not None else None
    if assessment is not None and assessment.result == "fail":
        return  # rolled back: the shadow never served a user
    if st.paused:
        show_pause(c, "shadow paused by a person")
        return
    if assessment is not None and verdicts is not None:
        if assessment.passed:
            st.current_step = 2
            c.event("ShadowPassed", "every metric passed on mirrored traffic: " + summary(names, verdicts))
            promote(c, "shadow passed: " + summary(names, verdicts))
            return
        st.inconclusive_streak += 1
    limit = parse_duration(shadow_cfg.duration)
    elapsed = seconds_since(st.step_started_at, c.now)
    streak_limit = spec.analysis.inconclusive_limit if spec.analysis else 0
    if elapsed > limit or st.inconclusive_streak > streak_limit:
        detail = summary(names, verdicts) if verdicts else "no measurement yet"
        on_inconclusive(c, f"shadow undecided after {elapsed:.0f}s; {detail}")
        return
    latest = {r.metric: r for r in st.analysis}
    waiting = [n for n in names if n not in latest or latest[n].verdict != "pass"]
    st.message = (f"shadow: judging mirrored traffic; waiting on "
                  f"{', '.join(pace(latest.get(n), n) for n in waiting)} (until {until_text(c.now + timedelta(seconds=limit - elapsed))})")
    warn_if_too_slow(c, [latest[n] for n in waiting if n in latest], limit - elapsed, "the shadow")
