"""The MLflow model registry: the ``champion`` alias, its promotion rule, and its export to ``models/``.

A trained model is registered as a new version of ``mlflow.registered_model``. The alias
``mlflow.champion_alias`` (``champion``) moves to it only when

1. the run did not train past the quality gate (``make train FORCE=1`` never promotes),
2. its validation ROC AUC is at least ``mlflow.min_val_roc_auc``, and
3. it beats the current champion's ROC AUC **on the same validation split**: the champion is
   loaded (from its export in ``models/champion/`` when that is the same version, else from its
   MLflow artifacts) and scores this run's validation sessions (strictly: a tie keeps the
   champion). A champion that cannot score them (an older feature table, missing artifacts)
   cannot be compared and is replaced, with the reason.

Otherwise the champion stays, and the run and the version are tagged with the reason. Comparing
with the figure the champion scored on *its own* lake would judge two models on different data:
a model trained on a big lake would then keep the alias against every later small run, whatever
those lakes hold.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.adapters.files import read_manifest, write_manifest
from website_activity.core.catalog import champion_card_path, champion_dir
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.core.manifests import ChampionCard

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

VAL_METRIC = "val_roc_auc"


@dataclass
class ChampionScore:
    """The current champion, judged on the new run's validation split."""

    version: str
    val_roc_auc: float | None     # None: it could not score the split (see note)
    note: str

    def tags(self) -> dict[str, str]:
        """MLflow tags of the run that was compared with this champion."""
        return {"champion_compared_version": self.version, "champion_compared": self.note}


@dataclass
class Promotion:
    """What happened to the alias for one new version."""

    promoted: bool
    reason: str
    version: str
    previous_version: str | None = None
    previous_val_roc_auc: float | None = None


def client(settings: Settings) -> "MlflowClient":
    """The MLflow client of ``mlflow.tracking_uri``, the registry explicitly too: without it the
    client takes the process-wide registry URI, which an earlier run in the same process (make
    all's stages, a test session) may have pointed at another store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)


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
    """The promotion rule (see the module docstring) as (promote?, reason).

    ``champion_val_roc_auc``: the champion's ROC AUC on the same validation split (``None``: no
    champion; ``-inf``: a champion that could not be scored).
    """
    if not gate_passed:
        return False, "trained past the quality gate (forced): never promoted"
    if not val_roc_auc >= min_val_roc_auc:
        return False, f"{VAL_METRIC} {val_roc_auc:.4f} is below the minimum {min_val_roc_auc:.4f}"
    if champion_val_roc_auc is None:
        return True, f"first champion ({VAL_METRIC} {val_roc_auc:.4f})"
    if champion_val_roc_auc == float("-inf"):
        return True, f"{VAL_METRIC} {val_roc_auc:.4f}; the champion could not score this validation split"
    if val_roc_auc > champion_val_roc_auc:
        return True, (f"{VAL_METRIC} {val_roc_auc:.4f} beats the champion's {champion_val_roc_auc:.4f} "
                      "on the same validation split")
    return False, (f"{VAL_METRIC} {val_roc_auc:.4f} does not beat the champion's "
                   f"{champion_val_roc_auc:.4f} on the same validation split")


def load_version(client: "MlflowClient", settings: Settings, version: Any) -> Any:
    """The Spark ``PipelineModel`` of a registered version: from ``models/champion/`` when that
    export is this version (a local read), else from the version's MLflow artifacts.

    Not ``mlflow.spark.load_model``: it copies the model to a DFS temp folder first, and checks
    requirements; a plain ``PipelineModel.load`` of the artifact folder is all scoring needs.
    """
    from pyspark.ml import PipelineModel

    name = settings["mlflow"]["registered_model"]
    try:
        card = read_manifest(champion_card_path(settings), ChampionCard)
    except PipelineError:  # a broken card: the version's MLflow artifacts instead
        card = None
    # the run id too: a version number restarts in a new tracking store
    if card is not None and (card.name, str(card.version), card.run_id) == (name, str(version.version), version.run_id) \
            and (champion_dir(settings) / "model").is_dir():
        return PipelineModel.load(str(champion_dir(settings) / "model"))
    local = local_artifacts(client, name, str(version.version))
    if local is None:
        import os

        import mlflow.artifacts

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        uri = client.get_model_version_download_uri(name, version.version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=settings.tracking_uri))
    return PipelineModel.load(str(local / "sparkml"))


def local_artifacts(client: "MlflowClient", name: str, version: str) -> Path | None:
    """The folder of a registered version's artifacts when the artifact store is a local one."""
    from urllib.parse import unquote, urlparse

    uri = client.get_model_version_download_uri(name, version)
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else None


def score_champion(client: "MlflowClient", settings: Settings, validation: "DataFrame") -> ChampionScore | None:
    """The current champion's ROC AUC on ``validation`` (this run's validation sessions, with
    ``label``), or ``None`` when there is no champion yet."""
    from pyspark.ml.functions import vector_to_array
    from sklearn.metrics import roc_auc_score

    conf = settings["mlflow"]
    current = champion(client, conf["registered_model"], conf["champion_alias"])
    if current is None:
        return None
    try:
        model = load_version(client, settings, current)
        scored = (model.transform(validation)
                  .select("label", vector_to_array("probability")[1].alias("probability")).toPandas())
        # the challenger's val_roc_auc is computed the same way (scikit-learn, exact, not binned)
        auc = roc_auc_score(scored["label"].to_numpy(), scored["probability"].to_numpy())
    except Exception as exc:  # an older feature table, missing artifacts: one line, no JVM trace
        note = f"version {current.version} cannot score this validation split: {first_line(exc)}"
        log.warning("champion %s", note)
        return ChampionScore(str(current.version), None, note)
    return ChampionScore(str(current.version), float(auc),
                         f"version {current.version} scored {VAL_METRIC} {auc:.4f} on this validation split")


def promote(client: "MlflowClient", settings: Settings, version: str, val_roc_auc: float,
            gate_passed: bool, current: ChampionScore | None) -> Promotion:
    """Move the champion alias to ``version`` if the rule allows it; tag the version either way.

    ``current``: the champion as :func:`score_champion` judged it on this run's validation split.
    """
    conf = settings["mlflow"]
    name, alias = conf["registered_model"], conf["champion_alias"]
    current_auc = None
    if current is not None:
        current_auc = current.val_roc_auc if current.val_roc_auc is not None else float("-inf")
    ok, reason = decide(val_roc_auc, float(conf["min_val_roc_auc"]), gate_passed, current_auc)
    if ok:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "promotion", "promoted" if ok else "kept")
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    log.info("model %s version %s: %s (%s)", name, version,
             f"now @{alias}" if ok else f"@{alias} stays on version {current.version}"
             if current is not None else f"no @{alias}", reason)
    return Promotion(ok, reason, str(version), None if current is None else current.version,
                     None if current_auc in (None, float("-inf")) else current_auc)


def export_champion(model: Any, card: ChampionCard, settings: Settings, saved: Path | None = None) -> Path:
    """Write the champion to ``models/champion/``: ``model/`` (the Spark PipelineModel) and ``card.json``.

    ``saved``: the same model as Spark already saved it (the logged model's ``sparkml`` folder in
    a local artifact store): copied, not saved again. Written next to the old export and swapped
    in, so a reader never finds half a model.
    """
    out = champion_dir(settings)
    tmp = out.with_name(".champion.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if saved is not None and (saved / "metadata").is_dir():
            shutil.copytree(saved, tmp / "model")
        else:
            model.write().overwrite().save(str(tmp / "model"))
    except Exception as exc:
        raise PipelineError(f"cannot export the champion to {out}: {first_line(exc)}") from exc
    write_manifest(tmp / champion_card_path(settings).name, card)
    old = out.with_name(".champion.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def promotion_dict(p: Promotion) -> dict[str, Any]:
    return asdict(p)
