"""The generated reviews: labels follow the stars, classes balance, the language is varied, and word
order matters (a bag of n-grams lands clearly below what a transformer reaches)."""

from __future__ import annotations

import collections

import pytest

from gradprobe.workflows.reviews import LABELS, make_reviews, stars_to_label


def test_stars_map_to_three_classes():
    assert [stars_to_label(s) for s in range(1, 6)] == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match="1..5"):
        stars_to_label(6)
    assert LABELS == ("negative", "neutral", "positive")


def test_balanced_reviews_are_balanced_reproducible_and_use_every_star():
    reviews = make_reviews(300, seed=4)
    assert collections.Counter(r.label for r in reviews) == {0: 100, 1: 100, 2: 100}
    assert set(r.stars for r in reviews) == {1, 2, 3, 4, 5}
    assert [r.text for r in make_reviews(300, seed=4)] == [r.text for r in reviews]
    assert [r.text for r in make_reviews(300, seed=5)] != [r.text for r in reviews]
    unbalanced = collections.Counter(r.label for r in make_reviews(900, seed=4, balanced=False))
    assert max(unbalanced.values()) - min(unbalanced.values()) > 30  # the natural mix is not balanced


def test_reviews_contain_contrasts_negations_hedges_comparisons_and_vary_in_length():
    texts = [r.text for r in make_reviews(600, seed=1)]
    for marker in (" but ", "lthough ", "not bad at all", "kind of", "my old one", "Would buy again"):
        assert any(marker in t for t in texts), marker
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) < 10 and max(lengths) > 35


def test_a_contrast_follows_its_main_clause_not_its_concession():
    # Noise-free: the label is the weighted polarity's; a concession's polarity is outweighed.
    worst, best = ("is awful", "is terrible", "is a joke"), ("is fantastic", "is excellent", "is superb")
    reviews = [r for r in make_reviews(3000, seed=2, noise=0.0) if ", but " in r.text and r.text.count(".") == 1]
    bad_then_good = [r for r in reviews if any(w in r.text.split(", but")[0] for w in worst)
                     and any(b in r.text.split(", but")[1] for b in best)]
    good_then_bad = [r for r in reviews if any(b in r.text.split(", but")[0] for b in best)
                     and any(w in r.text.split(", but")[1] for w in worst)]
    assert bad_then_good and good_then_bad
    assert all(r.label == 2 for r in bad_then_good) and all(r.label == 0 for r in good_then_bad)


def test_the_bag_of_ngrams_baseline_learns_but_stays_well_below_a_contextual_model():
    from gradprobe.workflows.baseline import train_baseline

    reviews = make_reviews(3000, seed=3)
    train, test = reviews[:2400], reviews[2400:]
    result = train_baseline([r.text for r in train], [r.label for r in train], [r.text for r in test],
                            [r.label for r in test], len(LABELS))
    assert 0.55 < result.metrics.accuracy < 0.78, result.metrics
    assert result.metrics.confusion.sum() == len(test)
