"""Product reviews labelled negative / neutral / positive, generated locally (no dataset hub).

The sentences are built from templates with a seeded generator, so a run is reproducible and
tests can make as many as they need.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")

_PRODUCTS = ["headphones", "blender", "phone case", "backpack", "coffee maker", "keyboard", "desk lamp",
             "running shoes", "water bottle", "vacuum cleaner", "monitor", "tent", "kettle", "charger"]
_ASPECTS = ["battery life", "build quality", "sound", "price", "delivery", "fit", "design", "setup",
            "customer service", "size", "noise level", "instructions"]
_PHRASES = {
    "negative": ["broke after two days", "is a complete waste of money", "stopped working within a week",
                 "is much worse than advertised", "arrived damaged and support never answered",
                 "feels cheap and flimsy", "I regret buying it", "is terrible"],
    "neutral": ["is okay for the price", "does what it says, nothing more", "is average",
                "works but the {aspect} could be better", "is fine, neither great nor bad",
                "arrived on time and is as described", "is acceptable"],
    "positive": ["is excellent", "exceeded my expectations", "works perfectly", "is worth every penny",
                 "is the best I have owned", "I love the {aspect}", "is fantastic and well made"],
}
_OPENERS = ["", "Honestly, ", "After a month of use, ", "Overall, ", "To be fair, ", "Well, "]


@dataclass(frozen=True)
class Review:
    text: str
    label: int


def make_reviews(count: int, seed: int = 0) -> list[Review]:
    """`count` reviews, classes balanced, in random order."""
    rng = random.Random(seed)
    reviews = []
    for i in range(count):
        label = i % len(LABELS)
        product, aspect = rng.choice(_PRODUCTS), rng.choice(_ASPECTS)
        phrase = rng.choice(_PHRASES[LABELS[label]]).format(aspect=aspect)
        text = f"{rng.choice(_OPENERS)}the {product}'s {aspect} {phrase}."
        reviews.append(Review(text[0].upper() + text[1:], label))
    rng.shuffle(reviews)
    return reviews
