"""Labelled review texts for fine-tuning: generated, from a CSV file, or from a local Hugging Face
`datasets` dataset; split into train / validation / test.

Labels are the three classes of reviews.LABELS. A source gives either a star rating (1-5, mapped
1-2 negative, 3 neutral, 4-5 positive) or a label (a class name or its index). Bad rows stop the
load with an error naming the file, the line or row, and the column.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .reviews import LABELS, make_reviews, stars_to_label

RATING_COLUMNS = ("rating", "Rating", "stars", "Stars", "score", "Score")
LABEL_COLUMNS = ("label", "Label", "sentiment", "Sentiment")


class DataError(ValueError):
    """A data source that cannot be read as labelled reviews; the message names where."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text and the target. Neither rating nor label: the first column named
    like one of RATING_COLUMNS, else LABEL_COLUMNS."""

    text: str = "text"
    rating: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]


def generated_examples(count: int, seed: int = 0, balanced: bool = True) -> list[Example]:
    return [Example(r.text, r.label) for r in make_reviews(count, seed=seed, balanced=balanced)]


def load_csv(path: str | Path, columns: Columns = Columns()) -> list[Example]:
    """Rows of a CSV file with a header line (any dialect the csv sniffer recognises)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            text, target, is_rating = _resolve_columns(header, columns, str(path))
            return [_example(row, text, target, is_rating, f"{path} line {reader.line_num}")
                    for row in reader]
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from error


def load_hf_dataset(path: str | Path, columns: Columns = Columns()) -> Splits | list[Example]:
    """A dataset saved with `datasets`' save_to_disk: Splits when it has train and test splits
    (validation optional), else all its rows."""
    try:
        import datasets
    except ImportError as error:
        raise DataError("loading a Hugging Face dataset needs the package datasets (pip install datasets)") from error
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise DataError(f"{path}: not a dataset saved with datasets.save_to_disk ({error})") from error
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded or "test" not in loaded:
            rows = [e for name in loaded for e in _dataset_rows(loaded[name], columns, f"{path}[{name}]")]
            return rows
        parts = {name: _dataset_rows(loaded[name], columns, f"{path}[{name}]") for name in loaded}
        return Splits(parts["train"], parts.get("validation", []), parts["test"])
    return _dataset_rows(loaded, columns, str(path))


def load_examples(source: str | Path, columns: Columns = Columns()) -> Splits | list[Example]:
    """A CSV file or a saved `datasets` directory, told apart by what the path is."""
    path = Path(source)
    if path.is_dir():
        return load_hf_dataset(path, columns)
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory")
    return load_csv(path, columns)


def split_examples(examples: Sequence[Example], validation: float = 0.1, test: float = 0.1,
                   seed: int = 0) -> Splits:
    """A seeded shuffle, then test and validation fractions off the end."""
    if not 0 <= validation < 1 or not 0 < test < 1 or validation + test >= 1:
        raise ValueError(f"split fractions validation={validation}, test={test}: each in [0, 1), sum below 1")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_test, n_validation = max(1, round(len(shuffled) * test)), round(len(shuffled) * validation)
    if len(shuffled) - n_test - n_validation < 1:
        raise DataError(f"{len(shuffled)} examples are too few for a train, validation and test split")
    return Splits(shuffled[:len(shuffled) - n_test - n_validation],
                  shuffled[len(shuffled) - n_test - n_validation:len(shuffled) - n_test],
                  shuffled[len(shuffled) - n_test:])


def _dataset_rows(dataset: Any, columns: Columns, source: str) -> list[Example]:
    text, target, is_rating = _resolve_columns(list(dataset.column_names), columns, source)
    return [_example(row, text, target, is_rating, f"{source} row {i}") for i, row in enumerate(dataset)]


def _resolve_columns(header: list[str], columns: Columns, source: str) -> tuple[str, str, bool]:
    if columns.rating is not None and columns.label is not None:
        raise DataError(f"{source}: give a rating column or a label column, not both")
    target: str
    if columns.rating is not None:
        target, is_rating = columns.rating, True
    elif columns.label is not None:
        target, is_rating = columns.label, False
    else:
        found = [(c, True) for c in RATING_COLUMNS if c in header] + [(c, False) for c in LABEL_COLUMNS if c in header]
        if not found:
            raise DataError(f"{source}: no rating column ({', '.join(RATING_COLUMNS)}) or label column "
                            f"({', '.join(LABEL_COLUMNS)}); name one (columns: {', '.join(header)})")
        target, is_rating = found[0]
    for name in (columns.text, target):
        if name not in header:
            raise DataError(f"{source}: no column {name!r} (columns: {', '.join(header)})")
    return columns.text, target, is_rating


def _example(row: Mapping[str, Any], text_column: str, target_column: str, is_rating: bool, where: str) -> Example:
    text = row.get(text_column)
    if text is None or not str(text).strip():
        raise DataError(f"{where}, column {text_column!r}: empty text")
    value = row.get(target_column)
    label = _rating_label(value) if is_rating else _class_label(value)
    if label is None:
        wanted = "a star rating 1-5" if is_rating else f"a label ({', '.join(LABELS)} or 0-{len(LABELS) - 1})"
        raise DataError(f"{where}, column {target_column!r}: {value!r} is not {wanted}")
    return Example(str(text).strip(), label)


def _rating_label(value: Any) -> int | None:
    try:
        stars = float(str(value).strip())
    except ValueError:
        return None
    return stars_to_label(int(stars)) if stars.is_integer() and 1 <= stars <= 5 else None


def _class_label(value: Any) -> int | None:
    text = str(value).strip().lower()
    if text in LABELS:
        return LABELS.index(text)
    return int(text) if text.isdigit() and int(text) < len(LABELS) else None


def texts_and_labels(examples: Iterable[Example]) -> tuple[list[str], list[int]]:
    pairs = [(e.text, e.label) for e in examples]
    return [t for t, _ in pairs], [label for _, label in pairs]
