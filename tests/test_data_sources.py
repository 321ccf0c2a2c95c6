"""Source records: the project's sample files load; malformed records name file:line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.data.errors import SourceError
from harness.data.sources import (
    PRODUCT_FIELDS,
    load_categories,
    load_products,
    load_reviews,
    load_sources,
)
from tests.support.paths import REPO

DATA = REPO / "experiments" / "data"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_sample_products_cover_seven_locales_and_the_m2_fields() -> None:
    products = load_products(DATA / "products.jsonl")
    assert 250 <= len(products) <= 350
    assert {p.locale for p in products} == {"US", "UK", "DE", "JP", "ES", "IT", "FR"}
    raw = json.loads((DATA / "products.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert tuple(raw) == PRODUCT_FIELDS
    jp = [p for p in products if p.locale == "JP"]
    assert jp and all(any("\u3040" <= c <= "\u9fff" for c in p.title) for p in jp)


def test_heldout_records_share_no_product_brand_or_model_with_the_training_pool() -> None:
    train = load_products(DATA / "products.jsonl")
    held = load_products(DATA / "heldout" / "products.jsonl")
    assert not {p.id for p in train} & {p.id for p in held}
    assert not {p.brand for p in train} & {p.brand for p in held}
    assert not {p.model for p in train} & {p.model for p in held}
    held_reviews = load_reviews(DATA / "heldout" / "reviews.jsonl")
    assert {r.product_id for r in held_reviews} <= {p.id for p in held}


def test_reviews_and_categories_load_with_aspects_and_localized_names() -> None:
    reviews = load_reviews(DATA / "reviews.jsonl")
    assert all(1 <= r.rating <= 5 for r in reviews)
    with_aspects = [r for r in reviews if r.aspects]
    assert with_aspects and all(a.phrase in r.text for r in with_aspects for a in r.aspects)
    cats = load_categories(DATA / "categories.csv")
    bottle = next(c for c in cats if c.category == "water bottle")
    assert bottle.name("de") == "Trinkflasche" and bottle.name("en") == "water bottle"
    assert "backpack" in bottle.complements and bottle.attributes


def test_csv_and_jsonl_products_load_the_same(tmp_path: Path) -> None:
    rows = [json.loads(x) for x in (DATA / "products.jsonl").read_text("utf-8").splitlines()[:20]]
    with (tmp_path / "p.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PRODUCT_FIELDS)
        w.writeheader()
        w.writerows(rows)
    assert load_products(tmp_path / "p.csv") == load_products(_jsonl(tmp_path / "p.jsonl", rows))


def test_locale_filter_drops_products_and_their_reviews() -> None:
    s = load_sources(DATA / "products.jsonl", None, DATA / "reviews.jsonl", locales=["de"])
    assert s.products and {p.locale for p in s.products} == {"DE"}
    ids = {p.id for p in s.products}
    assert s.reviews and all(r.product_id in ids for r in s.reviews)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "B1", "locale": "US"}], r"p\.jsonl:1: missing field `title`"),
        (
            [{"id": "B1", "locale": "US", "title": "x", "price": "cheap"}],
            r"p\.jsonl:1: field `price` must be a number",
        ),
        (
            [
                {"id": "B1", "locale": "US", "title": "x"},
                {"id": "B1", "locale": "DE", "title": "y"},
            ],
            r"p\.jsonl:2: duplicate product id 'B1' \(first at .*p\.jsonl:1\)",
        ),
        ([{"id": "B1", "locale": "US", "title": "x", "colour": "red"}], r"unknown field `colour`"),
        ([{"id": "B1", "locale": "US", "title": ["x"]}], r"field `title` must be a string"),
    ],
)
def test_malformed_products_name_file_line_and_field(
    tmp_path: Path, rows: list[dict], message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        load_products(_jsonl(tmp_path / "p.jsonl", rows))


def test_malformed_reviews_and_files_are_reported(tmp_path: Path) -> None:
    bad_rating = [{"product_id": "B1", "rating": 7, "text": "ok"}]
    with pytest.raises(SourceError, match=r"r\.jsonl:1: field `rating` must be an integer 1\.\.5"):
        load_reviews(_jsonl(tmp_path / "r.jsonl", bad_rating))
    bad_phrase = [
        {
            "product_id": "B1",
            "rating": 4,
            "text": "Nice fit.",
            "aspects": [{"aspect": "fit", "phrase": "bad fit"}],
        }
    ]
    with pytest.raises(SourceError, match=r"phrase 'bad fit' is not in the text"):
        load_reviews(_jsonl(tmp_path / "r.jsonl", bad_phrase))
    (tmp_path / "broken.jsonl").write_text(
        '{"id": "B1", "locale": "US", "title": "x"}\n{oops\n', encoding="utf-8"
    )
    with pytest.raises(SourceError, match=r"broken\.jsonl:2: invalid JSON"):
        load_products(tmp_path / "broken.jsonl")
    (tmp_path / "p.xml").write_text("<p/>", encoding="utf-8")
    with pytest.raises(SourceError, match=r"unsupported format '\.xml'"):
        load_products(tmp_path / "p.xml")
    with pytest.raises(SourceError, match="file not found"):
        load_categories(tmp_path / "none.csv")
    (tmp_path / "c.csv").write_text("category,description,xx_bad\nmug,a cup,1\n", "utf-8")
    with pytest.raises(SourceError, match=r"c\.csv:2: unknown column `xx_bad`"):
        load_categories(tmp_path / "c.csv")
