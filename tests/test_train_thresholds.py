"""The dev threshold rule: F1.5 for the five focus categories, F1 for the others."""

from __future__ import annotations

import numpy as np

from flagger.categories import CATEGORY_KEYS
from flagger.train import FOCUS, beta_for, choose_thresholds


def test_focus_categories_weigh_recall_more():
    assert {c for c in CATEGORY_KEYS if beta_for(c) == 1.5} == set(FOCUS)
    assert all(beta_for(c) == 1.0 for c in CATEGORY_KEYS if c not in FOCUS)


def test_same_scores_give_a_lower_threshold_to_a_focus_category():
    # 10 positives (6 at 0.9, 4 at 0.3) and 90 negatives (8 at 0.3, 82 at 0.1), the
    # same in every column. At t=0.3: P 10/18, R 1 (F1 0.714, F1.5 0.803); at t=0.9:
    # P 1, R 0.6 (F1 0.750, F1.5 0.684). F1.5 takes 0.3, F1 takes 0.9.
    pos = np.array([0.9] * 6 + [0.3] * 4)
    neg = np.array([0.3] * 8 + [0.1] * 82)
    col = np.concatenate([pos, neg])
    fused = np.tile(col[:, None], (1, len(CATEGORY_KEYS)))
    Y = np.zeros_like(fused, dtype=int)
    Y[:10, :] = 1
    chosen, detail = choose_thresholds(fused, Y)
    for c in CATEGORY_KEYS:
        want = 0.3 if c in FOCUS else 0.9
        assert abs(chosen[c] - want) < 1e-9, (c, chosen[c])
        assert detail[c]["beta"] == beta_for(c)
    assert detail["neglect"]["dev_recall"] == 1.0
    assert detail["missing"]["dev_precision"] == 1.0
