"""The quality gate training obeys: what validate's ``latest.json`` says about the lake as it is now.

Validate writes ``latest.json`` (:func:`website_activity.core.catalog.validation_gate_path`); train reads
it here, so neither stage imports the other. No Spark needed: the lake's versions come from the
Delta logs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from website_activity.adapters.files import read_manifest
from website_activity.adapters.lake import lake_fingerprint
from website_activity.core.catalog import validation_gate_path
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError
from website_activity.core.manifests import ValidationGate

log = logging.getLogger(__name__)


@dataclass
class GateStatus:
    """What ``latest.json`` says about the lake as it is now.

    ``status`` is ``passed``, ``failed``, ``missing`` (never validated) or ``stale`` (the lake
    changed since its validation).
    """

    status: str
    message: str
    validated_at: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def check_gate(settings: Settings) -> GateStatus:
    """Compare ``latest.json`` with the lake as it is now (no Spark needed)."""
    path = validation_gate_path(settings)
    rerun = "run make validate"
    try:
        latest = read_manifest(path, ValidationGate)
    except PipelineError as exc:  # unreadable, or without a key the gate needs
        return GateStatus("missing", str(exc))
    if latest is None:
        return GateStatus("missing", f"the lake was never validated (no {path}): {rerun} first")
    when = latest.timestamp
    if not latest.passed:
        failures = latest.failures or []
        first = failures[0] if failures else {}
        name = first.get("expectation", "?") + (f"({first['column']})" if first.get("column") else "")
        count = f"{len(failures)} expectation{'s' if len(failures) != 1 else ''}"
        return GateStatus("failed", f"the latest validation ({when}) failed {count}, first {name}: "
                                    f"fix the data and {rerun}", when)
    if latest.fingerprint != lake_fingerprint(settings):
        return GateStatus("stale", f"the lake changed since its validation ({when}): {rerun} again", when)
    return GateStatus("passed", f"validated {when}", when)


def require_gate(settings: Settings, force: bool = False) -> GateStatus:
    """The gate's status, or a :class:`PipelineError` when it is not passed and not forced."""
    gate = check_gate(settings)
    if gate.passed:
        return gate
    if not force:
        raise PipelineError(f"refusing to train: {gate.message}; to train anyway: make train FORCE=1 "
                            "(scripts/train.py --force)")
    log.warning("training despite the quality gate (--force): %s", gate.message)
    return gate
