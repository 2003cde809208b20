"""How often an Integration that waits for a person's fix is looked at again (pure).

The resync timer reconciles every Integration every `ONCEFLOW_RECONCILE_SECONDS` (2 s in the demo,
1 s in the tests), which suits a rollout that moves. An invalid spec does not move: it changes
when someone edits it (an update, handled at once) or, for a missing Connector or Secret, when
that appears. So after an outcome that needs a fix, the timer skips the Integration for a delay
that doubles from one resync interval up to `cap`; a new generation starts again at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FixBackoff"]


@dataclass
class FixBackoff:
    """Per object (by uid): the generation that needs a fix, the current delay, when to look again."""

    base: float
    cap: float
    _waiting: dict[str, tuple[int, float, float]] = field(default_factory=dict)

    def due(self, uid: str, generation: int, now: float) -> bool:
        """Whether the timer should reconcile the object now."""
        state = self._waiting.get(uid)
        return state is None or state[0] != generation or now >= state[2]

    def record(self, uid: str, generation: int, *, needs_fix: bool, now: float) -> float | None:
        """Note a reconcile's outcome; returns the delay before the timer looks again, or None."""
        if not needs_fix:
            self._waiting.pop(uid, None)
            return None
        state = self._waiting.get(uid)
        delay = self.base if state is None or state[0] != generation else min(self.cap, state[1] * 2)
        self._waiting[uid] = (generation, delay, now + delay)
        return delay

    def forget(self, uid: str) -> None:
        """The object is gone."""
        self._waiting.pop(uid, None)
