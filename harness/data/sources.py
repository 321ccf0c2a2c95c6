"""Source records the synthetic data is generated from, read from CSV or JSONL and validated.

* :class:`Product` — the Amazon-M2 product format: ``id, locale, title, price, brand, color,
  size, model, material, author, desc``.
* :class:`Category` — a product category: ``category, description, attributes,
  complements`` and its name per language (CSV: one column per language code).
* :class:`Review` — a user review: ``product_id, rating, title, text`` and, optionally, the
  aspect phrases it mentions (``aspects``: ``[{"aspect", "phrase"}]``).

Every malformed record fails with a :class:`~harness.data.errors.SourceError` naming
``file:line`` and the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.errors import SourceError
from harness.jsonl import numbered_json_lines

LOCALE_LANGUAGE = {
    "US": "en",
    "UK": "en",
    "GB": "en",
    "CA": "en",
    "AU": "en",
    "IN": "en",
    "DE": "de",
    "JP": "ja",
    "ES": "es",
    "IT": "it",
    "FR": "fr",
}
LANGUAGE_NAME = {
    "en": "English",
    "de": "German",
    "ja": "Japanese",
    "es": "Spanish",
    "it": "Italian",
    "fr": "French",
}
PRODUCT_FIELDS = (
    "id",
    "locale",
    "title",
    "price",
    "brand",
    "color",
    "size",
    "model",
    "material",
    "author",
    "desc",
)


@dataclass(frozen=True)
class Product:
    """A product record (Amazon-M2 format)."""

    id: str
    locale: str
    title: str
    price: float | None = None
    brand: str | None = None
    color: str | None = None
    size: str | None = None
    model: str | None = None
    material: str | None = None
    author: str | None = None
    desc: str | None = None

    @property
    def language(self) -> str | None:
        """The language code of the product's locale (None when the locale is unknown)."""
        return LOCALE_LANGUAGE.get(self.locale)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-able dict (Amazon-M2 field order)."""
        return {k: getattr(self, k) for k in PRODUCT_FIELDS}


@dataclass(frozen=True)
class Category:
    """A product category with its localized names."""

    category: str
    description: str
    attributes: tuple[str, ...] = ()
    complements: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)

    def name(self, language: str | None) -> str:
        """The category's name in a language (English when unknown)."""
        if language and language != "en" and self.names.get(language):
            return self.names[language]
        return self.category


@dataclass(frozen=True)
class Aspect:
    """An aspect a review mentions and the phrase (verbatim in the text) that mentions it."""

    aspect: str
    phrase: str


@dataclass(frozen=True)
class Review:
    """A user review of a product."""

    product_id: str
    rating: int
    title: str
    text: str
    aspects: tuple[Aspect, ...] = ()
    key: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-able dict."""
        return {
            "product_id": self.product_id,
            "rating": self.rating,
            "title": self.title,
            "text": self.text,
            "aspects": [{"aspect": a.aspect, "phrase": a.phrase} for a in self.aspects],
        }


@dataclass(frozen=True)
class Sources:
    """All source records of a run."""

    products: tuple[Product, ...] = ()
    categories: tuple[Category, ...] = ()
    reviews: tuple[Review, ...] = ()

    def product(self, pid: str) -> Product | None:
        """The product with that id, or None."""
        return self._by_id().get(pid)

    def _by_id(self) -> dict[str, Product]:
        cache = self.__dict__.get("_by_id_cache")
        if cache is None:
            cache = {p.id: p for p in self.products}
            object.__setattr__(self, "_by_id_cache", cache)
        return cache


# --------------------------------------------------------------------------- reading


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of a CSV (header line 1) or JSONL file."""
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        if not reader.fieldnames:
            raise SourceError(f"{path}: empty CSV (no header)")
        for row in reader:
            if None in row:
                raise SourceError(f"{path}:{reader.line_num}: more values than header columns")
            yield reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}
    elif suffix in (".jsonl", ".json"):
        for lineno, obj in numbered_json_lines(text.splitlines(), path, SourceError):
            if not isinstance(obj, dict):
                raise SourceError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, obj
    else:
        raise SourceError(f"{path}: unsupported format {suffix!r} (expected .csv or .jsonl)")


def _str(row: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SourceError(f"{where}: missing field `{key}`")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise SourceError(f"{where}: field `{key}` must be a string, got {type(value).__name__}")
    return value.strip()


def _list(row: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = row.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(";") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise SourceError(f"{where}: field `{key}` must be a list of strings or `a;b;c`")


def load_products(path: str | Path) -> list[Product]:
    """Load products (Amazon-M2 format) from CSV or JSONL.

    Args:
        path: The file.

    Returns:
        The products in file order.

    Raises:
        SourceError: Missing ``id``/``locale``/``title``, an ill-typed field, a bad price, a
            duplicate id, or no records.
    """
    path = Path(path)
    out: list[Product] = []
    seen: dict[str, str] = {}
    for line, row in _rows(path):
        where = f"{path}:{line}"
        unknown = sorted(set(row) - set(PRODUCT_FIELDS))
        if unknown:
            raise SourceError(f"{where}: unknown field `{unknown[0]}` (expected {PRODUCT_FIELDS})")
        pid = _str(row, "id", where, required=True)
        assert pid is not None
        if pid in seen:
            raise SourceError(f"{where}: duplicate product id {pid!r} (first at {seen[pid]})")
        seen[pid] = where
        price_raw = row.get("price")
        price: float | None = None
        if price_raw is not None and price_raw != "":
            try:
                price = float(price_raw)
            except (TypeError, ValueError):
                raise SourceError(
                    f"{where}: field `price` must be a number, got {price_raw!r}"
                ) from None
            if price < 0:
                raise SourceError(f"{where}: field `price` must not be negative")
        locale = _str(row, "locale", where, required=True)
        assert locale is not None
        out.append(
            Product(
                id=pid,
                locale=locale.upper(),
                title=_str(row, "title", where, required=True) or "",
                price=price,
                **{
                    k: _str(row, k, where, required=False)
                    for k in ("brand", "color", "size", "model", "material", "author", "desc")
                },
            )
        )
    if not out:
        raise SourceError(f"{path}: no products")
    return out


def load_categories(path: str | Path) -> list[Category]:
    """Load product categories from CSV or JSONL.

    CSV columns: ``category, description, attributes, complements`` (lists as ``a;b``) and
    one column per language code holding the category's name in that language. JSONL rows
    carry the names as ``names: {lang: name}``.

    Args:
        path: The file.

    Returns:
        The categories in file order.

    Raises:
        SourceError: Missing ``category``/``description``, a duplicate category, or no rows.
    """
    path = Path(path)
    out: list[Category] = []
    seen: set[str] = set()
    for line, row in _rows(path):
        where = f"{path}:{line}"
        name = _str(row, "category", where, required=True)
        assert name is not None
        if name.lower() in seen:
            raise SourceError(f"{where}: duplicate category {name!r}")
        seen.add(name.lower())
        names: dict[str, str] = {}
        if isinstance(row.get("names"), dict):
            names = {str(k): str(v) for k, v in row["names"].items() if v}
        fixed = {"category", "description", "attributes", "complements", "names"}
        for k, v in row.items():
            if k not in fixed and v:
                if not (isinstance(k, str) and 2 <= len(k) <= 3 and k.isalpha()):
                    raise SourceError(f"{where}: unknown column `{k}` (expected a language code)")
                names[k] = str(v)
        out.append(
            Category(
                category=name,
                description=_str(row, "description", where, required=True) or "",
                attributes=_list(row, "attributes", where),
                complements=_list(row, "complements", where),
                names=names,
            )
        )
    if not out:
        raise SourceError(f"{path}: no categories")
    return out


def _aspects(value: Any, text: str, where: str) -> tuple[Aspect, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SourceError(f"{where}: field `aspects` must be a JSON list") from None
    if not isinstance(value, list):
        raise SourceError(f"{where}: field `aspects` must be a list")
    out = []
    for i, a in enumerate(value):
        if not (isinstance(a, dict) and isinstance(a.get("aspect"), str)):
            raise SourceError(f"{where}: aspects[{i}] needs a string `aspect`")
        phrase = a.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            raise SourceError(f"{where}: aspects[{i}] needs a string `phrase`")
        if phrase not in text:
            raise SourceError(f"{where}: aspects[{i}] phrase {phrase!r} is not in the text")
        out.append(Aspect(a["aspect"], phrase))
    return tuple(out)


def load_reviews(path: str | Path) -> list[Review]:
    """Load user reviews from CSV or JSONL.

    Args:
        path: The file.

    Returns:
        The reviews in file order; ``key`` is ``<product_id>#<n>`` (n-th review of it).

    Raises:
        SourceError: Missing field, a rating outside 1..5, an aspect phrase that is not in
            the text, or no rows.
    """
    path = Path(path)
    out: list[Review] = []
    count: dict[str, int] = {}
    for line, row in _rows(path):
        where = f"{path}:{line}"
        pid = _str(row, "product_id", where, required=True)
        assert pid is not None
        raw = row.get("rating")
        try:
            rating = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SourceError(
                f"{where}: field `rating` must be an integer 1..5, got {raw!r}"
            ) from None
        if not 1 <= rating <= 5 or (isinstance(raw, float) and raw != rating):
            raise SourceError(f"{where}: field `rating` must be an integer 1..5, got {raw!r}")
        text = _str(row, "text", where, required=True) or ""
        n = count.get(pid, 0)
        count[pid] = n + 1
        out.append(
            Review(
                product_id=pid,
                rating=rating,
                title=_str(row, "title", where, required=False) or "",
                text=text,
                aspects=_aspects(row.get("aspects"), text, where),
                key=f"{pid}#{n}",
            )
        )
    if not out:
        raise SourceError(f"{path}: no reviews")
    return out


def load_sources(
    products: str | Path | None = None,
    categories: str | Path | None = None,
    reviews: str | Path | None = None,
    locales: list[str] | None = None,
) -> Sources:
    """Load whichever source files are given, optionally keeping only some locales.

    Args:
        products: Products file.
        categories: Categories file.
        reviews: Reviews file.
        locales: Keep only products of these locales (and reviews of kept products).

    Returns:
        The sources.
    """
    prods = load_products(products) if products else []
    if locales is not None:
        wanted = {loc.upper() for loc in locales}
        prods = [p for p in prods if p.locale in wanted]
    revs = load_reviews(reviews) if reviews else []
    if products:
        ids = {p.id for p in prods}
        revs = [r for r in revs if r.product_id in ids]
    cats = load_categories(categories) if categories else []
    return Sources(tuple(prods), tuple(cats), tuple(revs))
