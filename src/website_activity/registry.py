"""The MLflow model registry: the ``champion`` alias, its promotion rule, and its export to ``models/``.

A trained model is registered as a new version of ``mlflow.registered_model``. The alias
``mlflow.champion_alias`` (``champion``) moves to it only when

1. the run did not train past the quality gate (``make train FORCE=1`` never promotes),
2. its validation ROC AUC is at least ``mlflow.min_val_roc_auc``, and
3. it beats the current champion's validation ROC AUC (strictly: a tie keeps the champion).

Otherwise the champion stays, and the run and the version are tagged with the reason.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.config import Settings
from website_activity.errors import PipelineError, first_line

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

VAL_METRIC = "val_roc_auc"


@dataclass
class Promotion:
    """What happened to the alias for one new version."""

    promoted: bool
    reason: str
    version: str
    previous_version: str | None = None
    previous_val_roc_auc: float | None = None


def champion(client: "MlflowClient", name: str, alias: str) -> Any:
    """The model version that holds ``alias``, or ``None`` (no such model or alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def decide(val_roc_auc: float, min_val_roc_auc: float, gate_passed: bool,
           champion_val_roc_auc: float | None) -> tuple[bool, str]:
    """The promotion rule (see the module docstring) as (promote?, reason)."""
    if not gate_passed:
        return False, "trained past the quality gate (forced): never promoted"
    if not val_roc_auc >= min_val_roc_auc:
        return False, f"{VAL_METRIC} {val_roc_auc:.4f} is below the minimum {min_val_roc_auc:.4f}"
    if champion_val_roc_auc is None:
        return True, f"first champion ({VAL_METRIC} {val_roc_auc:.4f})"
    if val_roc_auc > champion_val_roc_auc:
        return True, f"{VAL_METRIC} {val_roc_auc:.4f} beats the champion's {champion_val_roc_auc:.4f}"
    return False, (f"{VAL_METRIC} {val_roc_auc:.4f} does not beat the champion's "
                   f"{champion_val_roc_auc:.4f}")


def promote(client: "MlflowClient", settings: Settings, version: str, val_roc_auc: float,
            gate_passed: bool) -> Promotion:
    """Move the champion alias to ``version`` if the rule allows it; tag the version either way."""
    conf = settings["mlflow"]
    name, alias = conf["registered_model"], conf["champion_alias"]
    current = champion(client, name, alias)
    current_auc = None
    if current is not None:
        current_auc = client.get_run(current.run_id).data.metrics.get(VAL_METRIC)
        if current_auc is None:  # a champion without the metric cannot be compared: replace it
            current_auc = float("-inf")
    ok, reason = decide(val_roc_auc, float(conf["min_val_roc_auc"]), gate_passed, current_auc)
    if ok:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "promotion", "promoted" if ok else "kept")
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    log.info("model %s version %s: %s (%s)", name, version,
             f"now @{alias}" if ok else f"@{alias} stays on version {current.version}"
             if current is not None else f"no @{alias}", reason)
    return Promotion(ok, reason, str(version), None if current is None else str(current.version),
                     None if current_auc in (None, float("-inf")) else current_auc)


def champion_dir(settings: Settings) -> Path:
    return settings.path("models") / "champion"


def export_champion(model: Any, card: dict[str, Any], settings: Settings) -> Path:
    """Write the champion to ``models/champion/``: ``model/`` (the Spark PipelineModel) and ``card.json``.

    Written next to the old export and swapped in, so a reader never finds half a model.
    """
    out = champion_dir(settings)
    tmp = out.with_name(".champion.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.write().overwrite().save(str(tmp / "model"))
    except Exception as exc:
        raise PipelineError(f"cannot export the champion to {out}: {first_line(exc)}") from exc
    (tmp / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    old = out.with_name(".champion.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def promotion_dict(p: Promotion) -> dict[str, Any]:
    return asdict(p)
