"""The watch window after promotion: the promoted revision serves everything while the prior
one is kept warm; a regression puts the prior revision back."""

from __future__ import annotations

from kanaria.rollout.clock import parse_iso, until_text
from kanaria.rollout.cycle import Cycle
from kanaria.rollout.endings import finish_watch, judge

__all__ = ["watch"]


def watch(c: Cycle) -> None:
    st, spec = c.st, c.spec
    stable, prior = st.stable_revision, st.prior_revision
    assert stable is not None
    c.d.replicas[stable] = spec.replicas
    if prior is not None:
        c.d.replicas[prior] = spec.replicas
    c.d.weights = {stable: 100}
    if c.obs.verdicts is not None and judge(c, c.obs.verdicts).result == "fail":
        return  # reverted
    until = parse_iso(st.watch_until)
    if until is None or c.now >= until:
        finish_watch(c)
        st.message = f"serving revision {stable} ({st.stable_version}); watch window passed"
        return
    left = (until - c.now).total_seconds()
    st.message = f"watching {stable} until {until_text(until)} with {prior} kept warm"
    c.requeue(left)
