import numpy as np
import pytest

from tango3d_core.eval import metrics as M


def test_correspondence_errors_hand_computed():
    pred = np.array([[0.0, 0, 0], [0.3, 0.4, 0]])
    true = np.zeros((2, 3))
    np.testing.assert_allclose(M.correspondence_errors(pred, true), [0.0, 0.5])
    np.testing.assert_allclose(M.correspondence_errors(pred, true, diameter=2.0), [0.0, 0.25])


def test_accuracy_at_and_curve():
    e = np.array([0.005, 0.02, 0.04, 0.2])
    acc = M.accuracy_at(e)
    assert acc == {0.01: 0.25, 0.025: 0.5, 0.05: 0.75, 0.1: 0.75}
    t, a = M.accuracy_curve(e, max_threshold=0.2, num=5)  # 0, .05, .1, .15, .2
    np.testing.assert_allclose(a, [0.0, 0.75, 0.75, 0.75, 1.0])
    assert np.isnan(M.accuracy_at(np.array([]))[0.1])


def test_retrieval_hand_computed():
    # 2 queries, 3 gallery items; query 0 (label a): ranks b, a, a -> AP = (1/2 + 2/3) / 2
    sim = np.array([[0.1, 0.5, 0.9], [0.9, 0.2, 0.1]])
    ql = np.array(["a", "b"])
    gl = np.array(["a", "a", "b"])
    assert M.recall_at_k(sim, ql, gl, 1) == 0.0
    assert M.recall_at_k(sim, ql, gl, 2) == 0.5
    assert M.precision_at_k(sim, ql, gl, 2) == pytest.approx((1 / 2 + 0) / 2)
    # query 1 (label b): ranks a, a, b -> AP = 1/3
    assert M.mean_average_precision(sim, ql, gl) == pytest.approx(((0.5 + 2 / 3) / 2 + 1 / 3) / 2)


def test_map_matches_naive_reference():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(7, 20))
    ql = rng.integers(0, 3, 7)
    gl = rng.integers(0, 3, 20)

    def naive_ap(s, q):
        order = np.argsort(-s)
        hits, total = 0, 0.0
        for r, j in enumerate(order, 1):
            if gl[j] == q:
                hits += 1
                total += hits / r
        return total / hits if hits else None

    aps = [a for a in (naive_ap(sim[i], ql[i]) for i in range(7)) if a is not None]
    assert M.mean_average_precision(sim, ql, gl) == pytest.approx(np.mean(aps))


def test_label_accuracy_and_miou():
    true = np.array([0, 0, 1, 1, -1])
    pred = np.array([0, 1, 1, 1, 0])
    assert M.label_accuracy(pred, true) == 0.75
    # class 0: inter 1, union 2 -> .5 ; class 1: inter 2, union 3 -> 2/3
    assert M.mean_iou(pred, true) == pytest.approx((0.5 + 2 / 3) / 2)


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.correspondence_errors(np.zeros((2, 3)), np.zeros((3, 3))),
        lambda: M.correspondence_errors(np.zeros((2, 3)), np.zeros((2, 3)), diameter=0),
        lambda: M.recall_at_k(np.zeros((2, 2)), np.zeros(3), np.zeros(2), 1),
        lambda: M.recall_at_k(np.zeros((2, 2)), np.zeros(2), np.zeros(2), 0),
        lambda: M.mean_iou(np.zeros(3), np.zeros(4)),
    ],
)
def test_bad_inputs(call):
    with pytest.raises(ValueError):
        call()
