"""The manifests stages hand each other, as typed records: one frozen dataclass per JSON file.

=================== ====================================== ==========================================
record              file (:mod:`website_activity.core.catalog`) written by
=================== ====================================== ==========================================
ProduceManifest     ``produce.json`` (produce_manifest_path) make produce: what the producers sent
IngestSummary       ``ingest.json`` (ingest_summary_path)    make ingest: the reconciliation, tables
ValidationGate      ``latest.json`` (validation_gate_path)   make validate: the gate train obeys
ModelMetrics        ``metrics.json`` (model_metrics_path)    make train: the last run's figures
ChampionCard        ``champion/card.json`` (champion_card_path) make train: the exported champion
=================== ====================================== ==========================================

A record's fields are the file's keys, in the order the file has them (``to_dict`` gives exactly
the keys the stage has always written, so the JSON on disk, the tests and the README stay as they
were). ``from_dict`` is strict about the required keys (fields without a default: a file without
one is broken, and says which file and key in one line) and tolerant of the optional ones (a file
from an older run without them reads with their defaults). Keys a record does not know (from a
newer writer) are kept in ``extra`` and written back after the known ones.

Nested sections (faults, tables, failures, metrics ...) stay plain dicts and lists: typing them
would add nothing their readers need. Pure: stdlib only, no engine, no I/O (the files are read and
written by :mod:`website_activity.adapters.files`).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from website_activity.core.errors import PipelineError

M = TypeVar("M", bound="Manifest")


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What every record shares: ``to_dict`` / ``from_dict`` over its fields, in their order."""

    FILE: ClassVar[str] = "manifest"        # the file's name, for errors without a path
    WRITER: ClassVar[str] = ""              # the Make target that writes it: "make ingest"
    SORT_KEYS: ClassVar[bool] = False       # the file's keys sorted (card.json), else in field order
    JSON_DEFAULT: ClassVar[Callable[[Any], Any] | None] = str  # what JSON cannot hold, turned into this

    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)  # keys this record does not know

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The file's keys this record knows, in the file's order."""
        return tuple(f.name for f in fields(cls) if f.name != "extra")

    @classmethod
    def required(cls) -> tuple[str, ...]:
        """The keys a file must have (fields without a default)."""
        return tuple(f.name for f in fields(cls) if f.name != "extra"
                     and f.default is MISSING and f.default_factory is MISSING)

    @classmethod
    def rerun(cls) -> str:
        """How to get a sound file again: ``run make ingest again``."""
        return f": run {cls.WRITER} again" if cls.WRITER else ""

    def to_dict(self) -> dict[str, Any]:
        """The file's document: the known keys in order, then the unknown ones kept in ``extra``."""
        doc = {name: getattr(self, name) for name in self.keys()}
        doc.update((k, v) for k, v in self.extra.items() if k not in doc)
        return doc

    @classmethod
    def from_dict(cls: type[M], doc: Any, source: str | None = None) -> M:
        """The record of a file's document (``source`` names the file in errors).

        Raises:
            PipelineError: ``doc`` is not a JSON object, or lacks a required key.
        """
        where = source or cls.FILE
        if not isinstance(doc, Mapping):
            raise PipelineError(f"{where}: not a JSON object but {type(doc).__name__}{cls.rerun()}")
        missing = [key for key in cls.required() if key not in doc]
        if missing:
            raise PipelineError(f"{where}: the required key {missing[0]!r} is missing{cls.rerun()}")
        known = cls.keys()
        return cls(**{k: doc[k] for k in known if k in doc},  # type: ignore[call-arg]
                   extra={k: v for k, v in doc.items() if k not in known})


@dataclass(frozen=True, kw_only=True)
class ProduceManifest(Manifest):
    """``produce.json``: what the producers sent (events, records, faults by kind, bytes, seconds)."""

    FILE: ClassVar[str] = "produce.json"
    WRITER: ClassVar[str] = "make produce"

    seed: int | None = None
    events: int
    records: int
    sent: int
    failed: int
    faults: dict[str, int]
    bytes: int = 0
    first_event_time: str | None = None
    last_event_time: str | None = None
    seconds: float = 0.0
    rate: float = 0.0
    live_rate: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    ground_truth: list[str] = field(default_factory=list)
    topics: list[dict[str, Any]] = field(default_factory=list)  # one ProduceResult each


@dataclass(frozen=True, kw_only=True)
class IngestSummary(Manifest):
    """``ingest.json``: the last ingest run's reconciliation (the ledger's counts against the
    tables' rows), file sizes and latency, as ``stages.ingest.finish_run`` writes it."""

    FILE: ClassVar[str] = "ingest.json"
    WRITER: ClassVar[str] = "make ingest"

    records_read: int
    silver: int
    quarantined: int
    duplicates_removed: int
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    late: int = 0
    gold_dropped_by_watermark: int = 0
    gold_rows: int | None = None
    silver_files: int | None = None
    silver_avg_file_bytes: int | None = None
    seconds: float = 0.0
    batches: int = 0
    rate: float = 0.0
    latency_s: dict[str, float] | None = None   # p50, p95, p99, max (None: no valid record)
    run: dict[str, int] = field(default_factory=dict)          # this run's counts
    ledger_batches: int = 0
    tables: dict[str, dict[str, int]] = field(default_factory=dict)  # bronze ... gold: files, bytes, rows
    watermark_delay_s: float | None = None
    finished_at: str | None = None
    reconciled: bool = False


@dataclass(frozen=True, kw_only=True)
class ValidationGate(Manifest):
    """``latest.json``: the last validation's outcome, and the lake it judged (train's gate)."""

    FILE: ClassVar[str] = "latest.json"
    WRITER: ClassVar[str] = "make validate"

    timestamp: str
    status: str                                  # passed or failed
    rows: int
    expectations: int
    seconds: float | None = None
    suites: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, Any]]               # one Outcome each
    fingerprint: str | None = None               # the lake's versions (stale when they moved)
    silver_version: int | None = None            # the silver version validated (train reads it)
    quarantine: dict[str, Any] | None = None     # rows, rate
    ingest: dict[str, int] | None = None         # records_read, duplicates_removed (None: no ingest.json)
    data_docs: str | None = None
    summary_csv: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True, kw_only=True)
class ModelMetrics(Manifest):
    """``metrics.json``: the last training run's id, version, params, metrics and promotion."""

    FILE: ClassVar[str] = "metrics.json"
    WRITER: ClassVar[str] = "make train"
    JSON_DEFAULT: ClassVar[Callable[[Any], Any] | None] = float  # numpy figures

    run_id: str
    version: str | None                          # None: mlflow.log_model is false
    params: dict[str, Any]
    metrics: dict[str, float]
    threshold: float | None = None
    promotion: dict[str, Any] | None = None      # the registry's Promotion (None: not registered)
    coefficients_per_unit: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ChampionCard(Manifest):
    """``models/champion/card.json``: which registered version the exported champion is."""

    FILE: ClassVar[str] = "card.json"
    WRITER: ClassVar[str] = "make train"
    SORT_KEYS: ClassVar[bool] = True
    JSON_DEFAULT: ClassVar[Callable[[Any], Any] | None] = None

    name: str
    version: str | None
    run_id: str
    model_uri: str
    threshold: float | None = None
    inputs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


MANIFESTS: tuple[type[Manifest], ...] = (ProduceManifest, IngestSummary, ValidationGate, ModelMetrics, ChampionCard)
