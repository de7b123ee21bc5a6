"""Product reviews with 1-5 stars, generated locally (no dataset hub), hard enough to be worth learning.

A review is one to three opinion clauses about aspects of a product, plus neutral facts. Each clause
has a polarity in [-2, 2], written with plain adjectives, negations ("not bad at all"), hedges ("kind
of disappointing") or comparisons ("worse than my old one"). Mixed reviews join two clauses of
opposite polarity with a contrast: the clause after "but" / "however", or the one that is not the
concession of "although" / "even though", carries the verdict, as in real reviews. The star rating
follows the weighted polarity plus a little noise, so reviews near a class border (2 vs 3, 3 vs 4
stars) are labelled inconsistently, like real ones. Typos are sprinkled in.

Which clause carries the verdict depends on word order, so a bag of words (or bigrams) cannot tell
"great sound, but the battery is awful" from "the battery is awful, but great sound": it lands
clearly below a fine-tuned transformer on these reviews.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")

_PRODUCTS = ["headphones", "blender", "phone case", "backpack", "coffee maker", "keyboard", "desk lamp",
             "running shoes", "water bottle", "vacuum cleaner", "monitor", "tent", "kettle", "charger",
             "office chair", "rain jacket", "toaster", "smartwatch", "air fryer", "bike lock"]
_ASPECTS = ["battery life", "build quality", "sound", "price", "delivery", "fit", "design", "setup",
            "customer service", "size", "noise level", "instructions", "material", "packaging", "comfort",
            "durability", "app", "colour"]
# Polarity -> ways to say it about an aspect ("the sound ...").
_OPINIONS: dict[float, list[str]] = {
    2.0: ["is fantastic", "is excellent", "is superb", "is outstanding", "blew me away", "is simply perfect",
          "is as good as the pricier brands", "is far better than my old one", "could not be better"],
    1.0: ["is good", "is decent", "is pretty nice", "works well", "is not bad at all", "is better than I expected",
          "is never a problem", "is solid", "is a step up from my old one", "is kind of great"],
    0.0: ["is okay", "is average", "is nothing special", "is about what you would expect", "is not terrible",
          "is neither good nor bad", "is fine, I guess", "is the same as my old one", "is kind of meh"],
    -1.0: ["is disappointing", "is mediocre", "could be better", "is a bit weak", "is not great",
           "is hardly what I would call good", "is worse than my old one", "is kind of poor",
           "is not as good as the cheaper brands"],
    -2.0: ["is terrible", "is awful", "is a joke", "is a complete disaster", "fell apart in a week",
           "is far worse than my old one", "could not be worse", "is not good at all, honestly useless"],
}
_TAILS = ["", "", "", " for the money", " to be honest", " for what it is", " in my experience",
          " after a few weeks", " from what I can tell", " overall", " compared to others"]
_CONTRASTS = ["but", "however,", "but honestly", "yet"]  # the clause after these carries the verdict
_CONCESSIONS = ["although", "even though", "while"]  # the clause they introduce does not
_FACTS = ["I bought this {product} last month.", "It arrived in four days.", "I use it every day.",
          "This was a gift for my sister.", "I ordered the blue one.", "I have had it for two weeks now.",
          "It replaced my old {product}.", "The box was a bit dented.", "I paid full price."]
_VERDICTS: dict[float, list[str]] = {
    2.0: ["Would buy again.", "Highly recommended."], 1.0: ["I would recommend it."],
    0.0: ["Not sure I would buy it again.", "It does the job."],
    -1.0: ["I would think twice before buying."], -2.0: ["Returning it.", "Avoid."],
}
_STAR_BORDERS = (-1.2, -0.35, 0.35, 1.2)  # weighted polarity -> 1..5 stars
_MAIN_WEIGHT = 5.0  # the verdict-carrying clause of a contrast outweighs its concession


@dataclass(frozen=True)
class Review:
    text: str
    stars: int  # 1..5
    product: str

    @property
    def label(self) -> int:
        return stars_to_label(self.stars)


def stars_to_label(stars: int) -> int:
    """1-2 stars negative (0), 3 neutral (1), 4-5 positive (2)."""
    if not 1 <= stars <= 5:
        raise ValueError(f"a star rating is 1..5, got {stars}")
    return 0 if stars <= 2 else 1 if stars == 3 else 2


def make_reviews(count: int, seed: int = 0, balanced: bool = True, noise: float = 0.1) -> list[Review]:
    """`count` reviews in random order; `balanced`: equal numbers per class (as near as count allows).
    `noise`: standard deviation added to the weighted polarity before it becomes stars."""
    rng = random.Random(seed)
    if not balanced:
        return [_review(rng, noise) for _ in range(count)]
    wanted = [count // len(LABELS) + (i < count % len(LABELS)) for i in range(len(LABELS))]
    reviews: list[Review] = []
    while len(reviews) < count:
        review = _review(rng, noise)
        if wanted[review.label] > 0:
            wanted[review.label] -= 1
            reviews.append(review)
    rng.shuffle(reviews)
    return reviews


def _review(rng: random.Random, noise: float) -> Review:
    product = rng.choice(_PRODUCTS)
    aspects = rng.sample(_ASPECTS, 3)
    shape = rng.random()
    if shape < 0.45:  # a contrast: which clause carries the verdict depends on the order
        main = rng.choice(list(_OPINIONS))
        minor = rng.choice([p for p in _OPINIONS if p * main < 0 or (main == 0 and p != 0)])
        main_text, minor_text = _clause(rng, aspects[0], main), _clause(rng, aspects[1], minor)
        form = rng.random()
        if form < 0.5:
            body = f"{minor_text}, {rng.choice(_CONTRASTS)} {main_text}"
        elif form < 0.75:
            body = f"{rng.choice(_CONCESSIONS)} {minor_text}, {main_text}"
        else:
            body = f"{main_text}, {rng.choice(_CONCESSIONS)} {minor_text}"
        score = (_MAIN_WEIGHT * main + minor) / (_MAIN_WEIGHT + 1)
        sentences = [body]
    else:  # one or two clauses of equal weight
        polarities = [rng.choice(list(_OPINIONS)) for _ in range(1 if shape < 0.8 else 2)]
        clauses = [_clause(rng, a, p) for a, p in zip(aspects, polarities)]
        sentences = [" and ".join(clauses)]
        score = sum(polarities) / len(polarities)
    if rng.random() < 0.2:  # an explicit verdict agrees with the score
        verdict = min(_VERDICTS, key=lambda v: abs(v - score))
        sentences.append(rng.choice(_VERDICTS[verdict]))
    for _ in range(rng.choice([0, 0, 1, 2])):
        sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(_FACTS).format(product=product))
    text = " ".join(_sentence(s) for s in sentences).replace("{product}", product)
    stars = 1 + sum(score + rng.gauss(0.0, noise) > border for border in _STAR_BORDERS)
    return Review(_typos(rng, text), stars, product)


def _clause(rng: random.Random, aspect: str, polarity: float) -> str:
    subject = rng.choice([f"the {aspect}", f"the {{product}}'s {aspect}", f"its {aspect}"])
    return f"{subject} {rng.choice(_OPINIONS[polarity])}{rng.choice(_TAILS)}"


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _typos(rng: random.Random, text: str) -> str:
    """A typo (swapped or dropped letter) in about one review in four."""
    if rng.random() > 0.25:
        return text
    words = text.split(" ")
    i = rng.randrange(len(words))
    word = words[i]
    if len(word) > 3 and word.isalpha():
        j = rng.randrange(1, len(word) - 1)
        words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2:] if rng.random() < 0.5 else word[:j] + word[j + 1:]
    return " ".join(words)
