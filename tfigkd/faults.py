"""Fault injection for the kill-and-resume tests: ``TFIGKD_FAULT=point:n``.

Stages call ``fault_point(name)`` where a real kill would hurt most (after
an epoch's checkpoint, after an IG shard's file but before its sidecar, in
the middle of an atomic write). When the environment variable names that
point, the process kills itself with SIGKILL at its n-th pass (1-based): the
same abrupt end as ``kill -9`` or the out-of-memory killer, at a reproducible
moment. Without the variable, a call costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def fault_point(name):
    """Kills this process with SIGKILL if ``TFIGKD_FAULT`` names this point and pass."""
    spec = os.environ.get("TFIGKD_FAULT")
    if not spec:
        return
    point, _, n = spec.rpartition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if str(_counts[name]) == n:
        os.kill(os.getpid(), signal.SIGKILL)
