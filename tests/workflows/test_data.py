"""Loading labelled reviews: CSV files in the common e-commerce layout, saved `datasets` directories,
splits, and errors that name the file, the line and the column."""

from __future__ import annotations

import csv

import pytest

from gradprobe.workflows.data import (
    Columns,
    DataError,
    Example,
    load_csv,
    load_examples,
    load_hf_dataset,
    split_examples,
)


def write_csv(path, header, rows):
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_clothing_review_layout_maps_ratings_to_classes(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", ["Clothing ID", "Review Text", "Rating"],
                     [[1, "Runs small, sadly", 2], [2, "Fine, nothing more", 3], [3, "Love it, so soft", 5],
                      [4, "Not for me", "1"]])
    examples = load_csv(path, Columns(text="Review Text", rating="Rating"))
    assert examples == [Example("Runs small, sadly", 0), Example("Fine, nothing more", 1),
                        Example("Love it, so soft", 2), Example("Not for me", 0)]
    # without naming it, a column called Rating is found
    assert load_csv(path, Columns(text="Review Text")) == examples


def test_label_column_takes_names_or_indices(tmp_path):
    path = write_csv(tmp_path / "l.csv", ["text", "label"], [["a", "Positive"], ["b", "neutral"], ["c", 0]])
    assert [e.label for e in load_csv(path, Columns(label="label"))] == [2, 1, 0]


@pytest.mark.parametrize("header, rows, columns, message", [
    (["Review Text", "Rating"], [["ok", 4]], Columns(text="Review", rating="Rating"),
     r"reviews.csv: no column 'Review' \(columns: Review Text, Rating\)"),
    (["Review Text", "Rating"], [["ok", 4], ["  ", 3]], Columns(text="Review Text", rating="Rating"),
     r"reviews.csv line 3, column 'Review Text': empty text"),
    (["Review Text", "Rating"], [["ok", 4], ["bad", 7]], Columns(text="Review Text", rating="Rating"),
     r"reviews.csv line 3, column 'Rating': '7' is not a star rating 1-5"),
    (["text", "label"], [["ok", "great"]], Columns(label="label"),
     r"reviews.csv line 2, column 'label': 'great' is not a label \(negative, neutral, positive or 0-2\)"),
    (["text", "other"], [["ok", 1]], Columns(), r"no rating column .* or label column"),
])
def test_bad_rows_and_columns_are_named(tmp_path, header, rows, columns, message):
    path = write_csv(tmp_path / "reviews.csv", header, rows)
    with pytest.raises(DataError, match=message):
        load_csv(path, columns)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv: no such file"):
        load_examples(tmp_path / "nowhere.csv")


def test_saved_datasets_with_splits_and_without(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"text": ["good", "bad", "meh", "great"], "rating": [4, 1, 3, 5]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                          "test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dd"))
    splits = load_hf_dataset(tmp_path / "dd")
    assert [e.label for e in splits.train] == [2, 0, 1, 2] and splits.validation == [] and len(splits.test) == 4
    datasets.Dataset.from_dict({"body": ["x", ""], "stars": [1, 2]}).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DataError, match=r"one row 1, column 'body': empty text"):
        load_examples(tmp_path / "one", Columns(text="body"))


def test_splits_are_disjoint_seeded_and_sized():
    examples = [Example(str(i), i % 3) for i in range(100)]
    splits = split_examples(examples, validation=0.1, test=0.2, seed=1)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (70, 10, 20)
    texts = [e.text for part in (splits.train, splits.validation, splits.test) for e in part]
    assert sorted(texts) == sorted(e.text for e in examples)
    assert split_examples(examples, 0.1, 0.2, seed=1) == splits != split_examples(examples, 0.1, 0.2, seed=2)
    with pytest.raises(ValueError, match="sum below 1"):
        split_examples(examples, 0.5, 0.5)
