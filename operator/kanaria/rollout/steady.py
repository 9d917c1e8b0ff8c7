"""No rollout under way: the first revision, and serving the stable one."""

from __future__ import annotations

from kanaria.rollout.cycle import Cycle
from kanaria.rollout.monitoring import watch_serving
from kanaria.rollout.phase import rolled_back

__all__ = ["first_deploy", "steady"]


def first_deploy(c: Cycle) -> None:
    st = c.st
    st.stable_revision, st.stable_version = c.obs.revision, c.obs.version
    c.unretire(c.obs.revision)
    c.history(c.obs.revision, c.obs.version, "deployed", "first revision")
    c.event("Deployed", f"revision {c.obs.revision} ({c.obs.version}) deployed as stable")
    steady(c)


def steady(c: Cycle) -> None:
    st, spec = c.st, c.spec
    stable = st.stable_revision
    assert stable is not None
    c.d.replicas[stable] = spec.replicas
    prior = st.prior_revision
    if prior is not None and not c.ready(stable):
        # A person asked to go back to an older revision: keep serving from the revision in
        # service until the older one is ready again.
        c.d.replicas[prior] = spec.replicas
        c.d.weights = {prior: 100, stable: 0}
        st.message = f"waiting for revision {stable} to become ready before moving traffic"
        c.requeue(2.0)
        return
    if prior is not None:
        c.retire(prior)
        st.prior_revision = st.prior_version = None
    c.d.weights = {stable: 100}
    if rolled_back(st, c.obs.revision):
        if c.ready(stable):
            watch_serving(c)  # the stable revision serves everything: it is watched as ever
        return
    if c.ready(stable):
        if st.phase != "Stable":
            st.message = f"serving revision {stable} ({st.stable_version})"
        watch_serving(c)
    else:
        state = c.obs.workloads.get(stable)
        ready = state.ready if state else 0
        st.message = f"waiting for revision {stable}: {ready}/{spec.replicas} replicas ready"
        c.requeue(2.0)
