"""Evaluation of scored sessions: metrics, the decision threshold, the oracle, and the plots.

Pure functions on NumPy arrays (labels 0/1 and probabilities), so they are exact and
reproducible: a scored split is small (one row per session) and is collected to the driver.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

EPS = 1e-15


def best_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The probability threshold that maximises F1 on these sessions (ties: the highest threshold).

    Tuned on the validation split, it handles the class imbalance without reweighting the
    training data, so the probabilities stay calibrated.
    """
    from sklearn.metrics import precision_recall_curve

    if labels.min() == labels.max():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(labels, probs)
    precision, recall = precision[:-1], recall[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(thresholds[best])


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float,
                   train_positive_rate: float) -> dict[str, float]:
    """Metrics of one scored split.

    ``baseline_*`` are those of the majority-class baseline: always the training set's majority
    class (accuracy), and the training set's positive rate as the probability (log loss, Brier).
    """
    from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, confusion_matrix,
                                 f1_score, log_loss, precision_score, recall_score, roc_auc_score)

    y = labels.astype(int)
    n = len(y)
    pred = (probs >= threshold).astype(int)
    tn, fp, fn, tp = (int(c) for c in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    positive_rate = float(np.mean(y == 1))
    both = 0.0 < positive_rate < 1.0
    # Probabilities of exactly 0 or 1 would make the log loss infinite: clipped to EPS first.
    clipped = np.clip(probs, EPS, 1 - EPS)
    base = min(max(train_positive_rate, EPS), 1 - EPS)
    return {
        "roc_auc": float(roc_auc_score(y, probs)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, probs)) if both else math.nan,
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y, probs, labels=[0, 1])),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0.0)),
        "recall": float(recall_score(y, pred, zero_division=0.0)),
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "tp": float(tp), "fp": float(fp), "fn": float(fn), "tn": float(tn),
        "positive_rate": positive_rate,
        "baseline_accuracy": positive_rate if train_positive_rate >= 0.5 else 1.0 - positive_rate,
        "baseline_log_loss": float(log_loss(y, np.full(n, base), labels=[0, 1])),
        "baseline_brier": float(brier_score_loss(y, np.full(n, train_positive_rate), labels=[0, 1])),
        "rows": float(n),
    }


def oracle_metrics(labels: np.ndarray, probs: np.ndarray, p_true: np.ndarray) -> dict[str, float]:
    """The true model's AUC on these sessions, the fitted model's AUC on the same ones, and the gap.

    Args:
        labels: Observed labels of the sessions that have a ground truth (complete ones).
        probs: The fitted model's probabilities for them.
        p_true: The generator's true conversion probabilities for them.

    Returns:
        ``oracle_roc_auc`` (the true probabilities), ``model_oracle_sessions_roc_auc`` (the model on
        the same sessions), ``oracle_gap`` (the first minus the second), ``oracle_brier`` and
        ``oracle_sessions``; empty when the sessions do not hold both classes.
    """
    from sklearn.metrics import roc_auc_score

    if len(labels) == 0 or labels.min() == labels.max():
        return {}
    oracle, model = float(roc_auc_score(labels, p_true)), float(roc_auc_score(labels, probs))
    return {"oracle_roc_auc": oracle, "model_oracle_sessions_roc_auc": model, "oracle_gap": oracle - model,
            "oracle_brier": float(np.mean((p_true - labels) ** 2)), "oracle_sessions": float(len(labels))}


def oracle_model_metrics(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                         model_roc_auc: float) -> dict[str, float]:
    """A logistic regression on the true model's own inputs: the best a regression can do with
    perfect features, given these training sessions.

    Fitted without a penalty on ``train_x`` (the generator's true inputs of the training
    sessions) and scored on ``test_x`` (those of the test sessions the fitted model is judged on).

    Returns:
        ``oracle_model_roc_auc`` and ``oracle_model_gap`` (it minus ``model_roc_auc``, the fitted
        model's AUC on the same test sessions).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0  # a constant input: its coefficient stays 0
    fit = LogisticRegression(C=np.inf, max_iter=2000, tol=1e-8).fit((train_x - mean) / std, train_y)
    auc = float(roc_auc_score(test_y, fit.predict_proba((test_x - mean) / std)[:, 1]))
    return {"oracle_model_roc_auc": auc, "oracle_model_gap": auc - model_roc_auc}


MIRRORS = {"page_views": "n_views", "product_views": "n_product_views", "cart_adds": "n_cart_adds",
           "checkout": "reached_checkout", "search": "used_search", "returning": "returning"}
"""The model inputs that mirror the generator's true inputs one for one (``mobile`` and ``evening``
are one-hot columns, compared with their siblings in :func:`true_signs`)."""


def true_signs(per_unit: dict[str, float]) -> dict[str, bool]:
    """Whether each input that mirrors a true one has the true coefficient's sign.

    Args:
        per_unit: Fitted coefficients per unit of each input (``coefficient_per_unit`` of the
            coefficients table), by feature name.

    Returns:
        True input -> sign right. ``mobile``: the mobile column below each other device's;
        ``evening``: the evening column above each other day part's (one-hot columns next to
        an intercept are only defined up to a common shift, their differences are not).
    """
    from website_activity.simulate.generator import TRUE_COEFFICIENTS

    out = {true: bool(np.sign(per_unit[name]) == np.sign(TRUE_COEFFICIENTS[true])) for true, name in MIRRORS.items()}

    def siblings(prefix: str, value: str) -> list[float]:
        return [v for k, v in per_unit.items() if k.startswith(prefix) and k != prefix + value
                and not k.endswith("__unknown")]

    mobile = per_unit["device_type_onehot_mobile"]
    out["mobile"] = all(mobile < other for other in siblings("device_type_onehot_", "mobile"))
    evening = per_unit["day_part_onehot_evening"]
    out["evening"] = all(evening > other for other in siblings("day_part_onehot_", "evening"))
    return out


# -- plots (matplotlib, Agg backend: no display needed) ----------------------------------------
def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.5, 4.5), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_roc(labels: np.ndarray, probs: np.ndarray, path: Path, oracle: tuple | None = None) -> Path:
    """ROC curve of the model (and of the true probabilities, when known)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = _figure()
    fpr, tpr, _ = roc_curve(labels, probs)
    ax.plot(fpr, tpr, label=f"model (AUC {roc_auc_score(labels, probs):.3f})")
    if oracle is not None:
        o_labels, o_probs = oracle
        fpr, tpr, _ = roc_curve(o_labels, o_probs)
        ax.plot(fpr, tpr, "--", label=f"true probabilities (AUC {roc_auc_score(o_labels, o_probs):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(labels: np.ndarray, probs: np.ndarray, path: Path) -> Path:
    """Precision-recall curve, with the positive rate as the no-skill line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = _figure()
    precision, recall, _ = precision_recall_curve(labels, probs)
    ax.plot(recall, precision, label=f"model (AP {average_precision_score(labels, probs):.3f})")
    ax.axhline(labels.mean(), linestyle=":", color="grey", label="positive rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test split")
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_confusion(metrics: dict[str, float], threshold: float, path: Path) -> Path:
    """The confusion matrix at the chosen threshold."""
    fig, ax = _figure()
    cells = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
    ax.imshow(cells, cmap="Blues")
    for (i, j), v in np.ndenumerate(cells):
        ax.text(j, i, f"{int(v)}", ha="center", va="center",
                color="white" if v > cells.max() / 2 else "black")
    ax.set_xticks([0, 1], ["no purchase", "purchase"])
    ax.set_yticks([0, 1], ["no purchase", "purchase"])
    ax.set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix, threshold {threshold:.3f}")
    return _save(fig, path)


def plot_calibration(labels: np.ndarray, probs: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Mean predicted probability against the observed rate, per quantile bin."""
    from sklearn.calibration import calibration_curve

    fig, ax = _figure()
    observed, predicted = calibration_curve(labels, probs, n_bins=bins, strategy="quantile")
    ax.plot(predicted, observed, "o-", label="model")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed purchase rate",
           title="Calibration, test split")
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_coefficients(names: Sequence[str], coefs: Sequence[float], path: Path) -> Path:
    """The logistic regression's coefficients (per standard deviation), largest first."""
    order = np.argsort(np.abs(np.asarray(coefs)))
    fig, ax = _figure()
    fig.set_size_inches(6.5, max(3.0, 0.28 * len(names) + 1))
    ax.barh([names[i] for i in order], [coefs[i] for i in order],
            color=["tab:green" if coefs[i] > 0 else "tab:red" for i in order])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(xlabel="coefficient (log odds per standard deviation)", title="Logistic regression")
    return _save(fig, path)
