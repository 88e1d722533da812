"""What an observer decides with its own clock: is a run alive, or silent past its stale limit?

The fold (``state.py``) reads no clock, so it cannot tell that a runner died. An observer can:
it compares the run's newest heartbeat with its own ``now``. Two clocks are involved, the
runner's (which stamped the heartbeat) and the observer's, and they may disagree. A heartbeat
stamped further ahead of the observer's clock than the stale limit (another host's clock an
hour fast) would keep a dead run fresh until the observer's clock caught up; such a run is
shown as **clock skew**, and its silence is counted from when this observer *first saw* that
heartbeat, by the observer's clock alone. ``Sightings`` is that memory; it lives as long as
the observer's process (the ``watch`` daemon, ``status --watch``, a runner deciding a resume).

The writers that own the job record what they decide (``RunStale``); a read-only command only
shows it (``Projector.view``).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .state import Run

SECOND = 1_000_000_000


class Liveness(msgspec.Struct, frozen=True):
    """How one run looks to one observer at one moment (``liveness``)."""

    #: ``finished``; ``stale`` (recorded so, or silent past its stale limit): its runner is
    #: presumed dead; or ``alive``
    state: str
    #: how long the observer can tell the run has been silent: since its newest heartbeat's
    #: time, or since the observer first saw that heartbeat, whichever is longer
    silent_ns: int = 0
    #: how far the newest heartbeat was stamped ahead of the observer's clock when the observer
    #: first saw it, when that is more than the stale limit (clock skew); else 0
    skew_ns: int = 0
    #: while alive: how much more silence makes the run stale
    stale_in_ns: int = 0

    @property
    def alive(self) -> bool:
        return self.state == "alive"

    @property
    def stale(self) -> bool:
        return self.state == "stale"


def newest_heartbeat(run: Run) -> int:
    """The time of the run's newest sign of life: its last heartbeat, start or accepted resume."""
    return run.heartbeat_ts or run.started_ts


def liveness(run: Run, now_ns: int, first_seen_ns: int | None = None) -> Liveness:
    """Whether ``run`` is alive at the observer's ``now_ns``.

    ``first_seen_ns``: when this observer first saw the run's newest heartbeat (its own
    clock; ``Sightings`` remembers it); None counts as seeing it now. The run is stale when
    it was recorded stale (``RunStale``, and nothing since), or when it has been silent for
    longer than its stale limit: since the heartbeat's time, or, if longer, since the observer
    first saw it (which is what decides for a heartbeat stamped in the observer's future).
    A pure function: the observer's clock is an argument.
    """
    if run.completed_ts is not None:
        return Liveness("finished")
    last = newest_heartbeat(run)
    limit = run.hb_stale * SECOND
    seen = now_ns if first_seen_ns is None else first_seen_ns
    ahead = last - seen  # as first seen: it stays the same while the observer watches
    skew = ahead if ahead > limit else 0
    silent = max(0, now_ns - last, now_ns - seen)
    if run.stale_since_ts is not None:
        return Liveness("stale", silent, run.skew_ns or skew)
    if silent > limit:
        return Liveness("stale", silent, skew)
    return Liveness("alive", silent, skew, limit - silent)


def is_stale(run: Run, now_ns: int, first_seen_ns: int | None = None) -> bool:
    """Unfinished, not yet recorded stale, and silent past its stale limit (``liveness``)."""
    return run.completed_ts is None and run.stale_since_ts is None and liveness(run, now_ns, first_seen_ns).stale


class Sightings:
    """One observer's memory of when it first saw each unfinished run's newest heartbeat."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}  # run id -> (heartbeat time, first seen)

    def first_seen(self, run: Run, now_ns: int) -> int:
        """When this observer first saw the run's newest heartbeat: ``now_ns`` if this is the first time."""
        last = newest_heartbeat(run)
        seen = self._seen.get(run.run_id)
        if seen is None or seen[0] != last:
            seen = self._seen[run.run_id] = (last, now_ns)
        return seen[1]

    def look(self, run: Run, now_ns: int) -> Liveness:
        """The run's liveness now, as this observer has seen it so far (and noting this sight)."""
        if run.completed_ts is not None:
            self._seen.pop(run.run_id, None)
            return Liveness("finished")
        return liveness(run, now_ns, self.first_seen(run, now_ns))

    def judge(self, runs: Iterable[Run], now_ns: int) -> dict[str, Liveness]:
        """``look`` at every unfinished run of ``runs`` (all of a task's); forget the others."""
        kept, judged = {}, {}
        for run in runs:
            if run.completed_ts is not None:
                continue
            judged[run.run_id] = liveness(run, now_ns, self.first_seen(run, now_ns))
            kept[run.run_id] = self._seen[run.run_id]
        self._seen = kept
        return judged
