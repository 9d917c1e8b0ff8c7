"""Requests from people (the ``kanaria.io/action`` annotation): pause, resume, promote,
abort, retry, rollback to a kept revision, retrain now, and adopt the candidate."""

from __future__ import annotations

from kanaria.rollout.clock import iso
from kanaria.rollout.cycle import Cycle
from kanaria.rollout.endings import revert, rollback
from kanaria.rollout.lifecycle import adopt, retrain
from kanaria.rollout.steps import advance
from kanaria.rollout.types import UserAction

__all__ = ["handle_action"]


def handle_action(c: Cycle, action: UserAction) -> None:
    st = c.st
    verb = action.verb
    in_canary = st.canary_revision is not None
    if verb == "invalid":
        c.event("ActionRejected", f"unknown action {action.arg!r}", warning=True)
    elif verb == "pause" and in_canary:
        st.paused = True
        st.pause_reason = ""
        c.event("Paused", "paused by a person")
    elif verb == "resume" and in_canary:
        st.paused = False
        st.pause_reason = ""
        st.inconclusive_streak = 0
        st.step_started_at = iso(c.now)
        c.event("Resumed", "resumed by a person")
    elif verb == "promote" and in_canary:
        st.paused = False
        st.pause_reason = ""
        advance(c, len(c.spec.canary_steps()), "promoted by a person")
    elif verb == "promote-full" and in_canary:
        st.paused = False
        st.pause_reason = ""
        st.current_step = len(c.spec.canary_steps())
        c.event("PromoteRequested", "full promotion requested by a person")
    elif verb == "abort" and in_canary:
        rollback(c, "aborted by a person", outcome="aborted")
    elif verb == "abort" and st.watch_until is not None:
        revert(c, "aborted by a person during the watch window")
    elif verb == "retry" and st.rejected_revision is not None:
        c.event("Retry", f"retrying revision {st.rejected_revision}")
        if st.validation is not None and st.validation.revision == st.rejected_revision:
            st.validation = None  # validated again, from the start
        st.rejected_revision = None
    elif verb == "retrain":
        retrain(c, "requested by a person", "")
    elif verb == "adopt":
        adopt(c, "adopted by a person")
    elif verb == "rollback" and action.arg is not None:
        _rollback_to(c, action.arg)
    else:
        c.event("ActionIgnored", f"{verb} does not apply in phase {st.phase}", warning=True)


def _rollback_to(c: Cycle, target: str) -> None:
    st = c.st
    known = set(st.retired) | {st.prior_revision}
    if target == st.stable_revision or target not in known or target not in c.obs.workloads:
        c.event(
            "ActionRejected",
            f"cannot roll back to {target!r}: not a kept revision "
            f"(kept: {', '.join(sorted(r for r in known if r)) or 'none'})",
            warning=True,
        )
        return
    if st.canary_revision is not None:
        rollback(c, f"rolled back by a person to {target}", outcome="aborted")
    current = st.stable_revision
    assert current is not None
    version = next((h.model_version for h in reversed(st.history) if h.revision == target), "")
    c.history(current, st.stable_version or "", "reverted", f"rolled back by a person to {target}")
    c.event("RolledBack", f"rolled back by a person from {current} to {target}", warning=True)
    c.unretire(target)
    st.prior_revision, st.prior_version = current, st.stable_version
    st.stable_revision, st.stable_version = target, version
    st.watch_until = None
    st.rejected_revision = c.obs.revision if c.obs.revision != target else None
    st.message = f"rolled back by a person to {target}"
