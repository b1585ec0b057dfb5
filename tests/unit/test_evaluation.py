"""Evaluation metrics, the threshold rule and the promotion rule, on small exact cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from website_activity.adapters.registry import decide
from website_activity.stages.train.evaluation import (best_threshold, binary_metrics, oracle_metrics,
                                                      oracle_model_metrics)

LABELS = np.array([0, 0, 0, 0, 1, 1, 0, 1])
PROBS = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.8, 0.6, 0.9])


def test_binary_metrics_by_hand():
    m = binary_metrics(LABELS, PROBS, threshold=0.5, train_positive_rate=0.25)

    # predicted positive: 0.6 (wrong), 0.8, 0.9 (right); 0.35 is a missed purchase
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 4)
    assert m["accuracy"] == 6 / 8
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # ROC AUC: of the 3 x 5 (positive, negative) pairs, the positive scores higher in 13
    assert m["roc_auc"] == pytest.approx(13 / 15)
    assert m["brier"] == pytest.approx(np.mean((PROBS - LABELS) ** 2))
    expected_ll = -np.mean(LABELS * np.log(PROBS) + (1 - LABELS) * np.log(1 - PROBS))
    assert m["log_loss"] == pytest.approx(expected_ll)
    # the baseline: always "no purchase" (the training majority), probability 0.25
    assert m["baseline_accuracy"] == 5 / 8
    assert m["baseline_log_loss"] == pytest.approx(-(3 * math.log(0.25) + 5 * math.log(0.75)) / 8)
    assert m["baseline_brier"] == pytest.approx((3 * 0.75 ** 2 + 5 * 0.25 ** 2) / 8)


def test_a_constant_split_has_no_auc_but_no_error():
    m = binary_metrics(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]), 0.5, 0.1)
    assert math.isnan(m["roc_auc"]) and m["accuracy"] == 1.0


def test_best_threshold_maximises_f1():
    t = best_threshold(LABELS, PROBS)
    # at 0.8: two purchases caught, no false alarm, F1 0.8; at 0.35 all three caught with two
    # false alarms, F1 0.75; at 0.5, F1 2/3
    assert t == pytest.approx(0.8)
    assert binary_metrics(LABELS, PROBS, t, 0.25)["f1"] == pytest.approx(0.8)
    assert binary_metrics(LABELS, PROBS, 0.35, 0.25)["f1"] == pytest.approx(0.75)


def test_oracle_metrics_and_gap():
    truth = np.array([0.05, 0.1, 0.2, 0.3, 0.7, 0.8, 0.4, 0.9])  # ranks every purchase first
    m = oracle_metrics(LABELS, PROBS, truth)
    assert m["oracle_roc_auc"] == 1.0
    assert m["oracle_gap"] == pytest.approx(1.0 - 13 / 15)
    assert m["model_oracle_sessions_roc_auc"] == pytest.approx(13 / 15)
    assert oracle_metrics(np.zeros(3), np.ones(3), np.ones(3)) == {}


def test_oracle_model_is_a_regression_on_the_true_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ np.array([1.5, -1.0, 0.0]) - 1)))).astype(float)
    m = oracle_model_metrics(x[:3000], y[:3000], x[3000:], y[3000:], model_roc_auc=0.5)
    # the fitted regression ranks like the true model on the held-out rows
    from sklearn.metrics import roc_auc_score
    truth = roc_auc_score(y[3000:], x[3000:] @ np.array([1.5, -1.0, 0.0]))
    assert m["oracle_model_roc_auc"] == pytest.approx(truth, abs=0.005)
    assert m["oracle_model_gap"] == pytest.approx(m["oracle_model_roc_auc"] - 0.5)


@pytest.mark.parametrize("auc, minimum, gate, champion, promoted, reason", [
    (0.80, 0.6, True, None, True, "first champion"),
    (0.80, 0.6, True, 0.75, True, "beats the champion's 0.7500"),
    (0.75, 0.6, True, 0.75, False, "does not beat"),          # a tie keeps the champion
    (0.70, 0.6, True, 0.75, False, "does not beat"),
    (0.55, 0.6, True, None, False, "below the minimum"),
    (0.90, 0.6, False, 0.75, False, "quality gate"),         # FORCE=1 never promotes
    (0.70, 0.6, True, float("-inf"), True, "could not score"),  # a champion that cannot be compared
    (0.70, 0.6, True, 0.71, False, "on the same validation split"),
])
def test_promotion_rule(auc, minimum, gate, champion, promoted, reason):
    ok, why = decide(auc, minimum, gate, champion)
    assert ok is promoted and reason in why


def test_true_signs_compare_one_hot_columns_with_their_siblings():
    from website_activity.stages.train.evaluation import true_signs

    per_unit = {"n_views": -0.1, "n_product_views": 0.2, "n_cart_adds": 0.8, "reached_checkout": 1.7,
                "used_search": 0.3, "returning": 0.5, "device_type_onehot_desktop": 0.4,
                "device_type_onehot_mobile": -0.1, "device_type_onehot_tablet": 0.3,
                "device_type_onehot___unknown": 0.0, "day_part_onehot_afternoon": -0.2,
                "day_part_onehot_evening": 0.1, "day_part_onehot_morning": -0.3, "day_part_onehot_night": -0.25}
    assert all(true_signs(per_unit).values()) and len(true_signs(per_unit)) == 8
    # mobile above tablet is the wrong sign, whatever the common shift of the one-hot columns
    assert true_signs({**per_unit, "device_type_onehot_tablet": -0.2})["mobile"] is False
    assert true_signs({**per_unit, "n_cart_adds": -0.01})["cart_adds"] is False
