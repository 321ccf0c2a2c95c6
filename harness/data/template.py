"""The offline ``template`` generator: deterministic ShopBench-style examples built from
product, review and category records, with no language model.

Every task mirrors a ShopBench task's prompt shape (multiple-choice prompts end with
``Answer: ``, the others with ``Output: ``) and its answer is grounded in the records:

========  ==========================  ==============================================
task      type                        built from
========  ==========================  ==============================================
task1     generation                  a category's description
task2     multiple-choice             a category attribute vs categories without it
task4     named_entity_recognition    a query made of brand, product type and color
task5     multiple-choice             brand / color / material read off the title
task6     generation                  the review phrase that mentions an aspect
task7     retrieval                   the three aspects a review covers, among ten
task11    multiple-choice             relation of two queries (narrowing, substitute…)
task12    ranking                     relevance of five titles to a brand+type query
task14    retrieval                   the brand's other products, complementary types
task15    multiple-choice             the review's star rating
task16    multiple-choice             the English keyword set of a foreign product
task17    generation                  the product's title in another locale
task18    multiple-choice             the same product's description in another language
========  ==========================  ==============================================

Products describe the same item across locales when they share brand and model. The
product type of a product is the category whose name (in any language) its title contains.
Answer positions of multiple-choice tasks are balanced by drawing them from shuffled decks.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.data.catalogue import Catalogue, TaskSpec
from harness.data.errors import SourceError
from harness.data.sources import LANGUAGE_NAME, Category, Product, Review, Sources
from harness.registry import Registry

GENERIC_ASPECTS = (
    "price",
    "quality",
    "delivery",
    "packaging",
    "durability",
    "value",
    "design",
    "instructions",
    "smell",
    "noise",
)
RELATIONS = ("irrelevant", "substitute", "complement", "narrowing")
ENGLISH = ("en",)


@dataclass(frozen=True)
class Built:
    """One built example before the task's ShopBench facts are attached."""

    prompt: str
    answer: Any
    locale: str | None
    source_ids: tuple[str, ...]
    metric: str | None = None


class Deck:
    """Draws 0..n-1 from shuffled full decks, so positions stay balanced."""

    def __init__(self, rng: random.Random, n: int) -> None:
        self.rng, self.n, self.cards = rng, n, []  # type: ignore[var-annotated]

    def draw(self) -> int:
        """The next position."""
        if not self.cards:
            self.cards = list(range(self.n))
            self.rng.shuffle(self.cards)
        return self.cards.pop()


class World:
    """Indexes over the source records that the builders query."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.products = sorted(sources.products, key=lambda p: p.id)
        self.categories = {c.category: c for c in sources.categories}
        self._names = sorted(
            (
                (name.lower(), c.category)
                for c in sources.categories
                for name in {c.category, *c.names.values()}
                if name
            ),
            key=lambda t: (-len(t[0]), t),
        )
        self.type_of: dict[str, str | None] = {p.id: self._resolve(p) for p in self.products}
        self.family: dict[str, list[Product]] = defaultdict(list)
        for p in self.products:
            self.family[self.family_key(p)].append(p)
        self.by_brand: dict[str, list[Product]] = defaultdict(list)
        self.by_type: dict[str, list[Product]] = defaultdict(list)
        for p in self.products:
            if p.brand:
                self.by_brand[p.brand].append(p)
            t = self.type_of[p.id]
            if t:
                self.by_type[t].append(p)
        self.reviews = sorted(sources.reviews, key=lambda r: r.key)
        self.aspect_vocab = sorted(
            {a.aspect for r in sources.reviews for a in r.aspects} | set(GENERIC_ASPECTS)
        )

    def _resolve(self, p: Product) -> str | None:
        title = p.title.lower()
        for name, cat in self._names:
            if name in title:
                return cat
        return None

    @staticmethod
    def family_key(p: Product) -> str:
        """Products that are the same item in different locales share this key."""
        return f"{p.brand}\x00{p.model}" if p.brand and p.model else p.id

    def siblings(self, p: Product) -> list[Product]:
        """The same item in the other locales."""
        return [q for q in self.family[self.family_key(p)] if q.id != p.id]

    def english(self, p: Product) -> Product | None:
        """The item's record in an English locale (itself when English)."""
        if p.language == "en":
            return p
        return next((q for q in self.siblings(p) if q.language == "en"), None)

    def type_name(self, p: Product, language: str | None = None) -> str | None:
        """The product's type in a language (the product's own language by default)."""
        t = self.type_of.get(p.id)
        if t is None:
            return None
        return self.categories[t].name(language or p.language)


def _options(
    rng: random.Random, deck: Deck, correct: str, distractors: list[str]
) -> tuple[str, int]:
    """Numbered option lines with ``correct`` at a deck-drawn position."""
    pos = deck.draw()
    opts = list(distractors[:3])
    rng.shuffle(opts)
    opts.insert(pos, correct)
    return "".join(f"{i}. {o}\n" for i, o in enumerate(opts)), pos


def _distinct(values: list[str], exclude: set[str]) -> list[str]:
    out, seen = [], {e.lower() for e in exclude}
    for v in values:
        if v and v.lower() not in seen:
            seen.add(v.lower())
            out.append(v)
    return out


# --------------------------------------------------------------------------- builders
# A builder gets (world, anchor, variant index, rng, deck) and returns an example or None.

Builder = Callable[[World, Any, int, random.Random, Deck], Built | None]


def _task1(w: World, c: Category, k: int, rng: random.Random, deck: Deck) -> Built | None:
    if k > 0:
        return None
    name = " ".join(x.capitalize() for x in c.category.split())
    prompt = f"Instructions: Tell me what this product category is about\nInput: {name}\nOutput:"
    return Built(prompt, c.description, None, (c.category,))


def _task2(w: World, c: Category, k: int, rng: random.Random, deck: Deck) -> Built | None:
    if not c.attributes:
        return None
    attr = c.attributes[k % len(c.attributes)]
    others = sorted(x.category for x in w.categories.values() if attr not in x.attributes)
    if len(others) < 3:
        return None
    opts, pos = _options(rng, deck, c.category, rng.sample(others, 3))
    prompt = (
        f"Which of the following product categories may have the attribute {attr}?\n{opts}Answer: "
    )
    return Built(prompt, pos, None, (c.category,))


NER_PROMPT = (
    "You are a helpful online shop assistant and a linguist. A customer on an online shopping "
    "platform has made the following query. Please extract phrases from the query that "
    "correspond to the entity type '{etype}'. \nPlease directly output the entity without "
    "repeating the entity type. If there are multiple such entities, separate them with comma. "
    "Do not give explanations. \nQuery: {query}\nOutput: "
)


def _task4(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    ptype = w.type_name(p)
    if not (p.brand and ptype):
        return None
    brand, t = p.brand.lower(), ptype.lower()
    color = (p.color or "").lower()
    variants: list[tuple[str, str, str]] = [
        ("brand", f"{brand} {t}", brand),
        ("product type", f"{t} {color}" if color else f"{brand} {t}", t),
    ]
    if color:
        variants.append(("color", f"{color} {t}", color))
        variants.append(("brand", f"{brand} {t} {color}", brand))
    if p.size:
        variants.append(("product type", f"{brand} {t} {p.size.lower()}", t))
    etype, query, entity = variants[k % len(variants)] if k < len(variants) else (None, "", "")
    if etype is None:
        return None
    return Built(NER_PROMPT.format(etype=etype, query=query), [entity], p.locale, (p.id,))


_T5_QUESTIONS = {
    "brand": "What is the brand of this product?",
    "color": "What color is it?",
    "material": "What material is it made of?",
}


def _task5(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    kinds = [f for f in ("brand", "color", "material") if getattr(p, f)]
    if k >= len(kinds):
        return None
    field = kinds[(k + sum(map(ord, p.id))) % len(kinds)]
    correct = getattr(p, field)
    pool = sorted(
        {getattr(q, field) for q in w.products if q.locale == p.locale and getattr(q, field)}
    )
    pool = _distinct(pool, {correct})
    if len(pool) < 3:
        return None
    opts, pos = _options(rng, deck, correct, rng.sample(pool, 3))
    prompt = (
        f"The product '{p.title}' appears on an e-commerce website.  {_T5_QUESTIONS[field]}\n"
        f"{opts}Answer: "
    )
    return Built(prompt, pos, p.locale, (p.id,))


def _review_product(w: World, r: Review) -> tuple[Product, str] | None:
    p = w.sources.product(r.product_id)
    if p is None:
        return None
    t = w.type_name(p, "en")
    return (p, t) if t else None


def _task6(w: World, r: Review, k: int, rng: random.Random, deck: Deck) -> Built | None:
    hit = _review_product(w, r)
    if hit is None or k >= len(r.aspects):
        return None
    p, t = hit
    a = r.aspects[(k + len(r.text)) % len(r.aspects)]
    prompt = (
        f"You are given a user review to a(n) {t} product and an aspect covered in the review. \n"
        "Please extract the keyphrase from the review that mentions the given aspect. \n"
        "You should only extract ONLY ONE keyphrase from the review. \n"
        "You should not generate new keyphrases that do not exist in the review.\n"
        "Do not give explanations or irrelevant text. Generate short keyphrases, not whole "
        f"sentences.  \nReview: {r.text}\nAspect: {a.aspect}\nOutput: "
    )
    return Built(prompt, a.phrase, p.locale, (r.key,))


def _task7(w: World, r: Review, k: int, rng: random.Random, deck: Deck) -> Built | None:
    hit = _review_product(w, r)
    if hit is None or len(r.aspects) < 3:
        return None
    p, t = hit
    covered = [a.aspect for a in r.aspects[:3]]
    text = r.text.lower()
    others = [a for a in w.aspect_vocab if a not in covered and a.lower() not in text]
    if len(others) < 7:
        return None
    items = covered + rng.sample(others, 7)
    rng.shuffle(items)
    answer = sorted(items.index(a) + 1 for a in covered)
    listing = "".join(f"{i}.{a}\n" for i, a in enumerate(items, start=1))
    prompt = (
        f"You are given a user review given to a(n) {t} product. You are also given a numbered "
        "list of ten aspects. \nPlease choose three aspects from the list that are covered by "
        "the review. \nYou should ONLY output three numbers, separated by comma. Do not generate "
        f"explanations or other texts. \nReview: \n{r.text}\nAspect List: \n{listing}Output: "
    )
    return Built(prompt, answer, p.locale, (r.key,))


def _task11(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    t = w.type_of.get(p.id)
    if not (t and p.brand and p.language == "en" and p.color):
        return None
    q1 = f"{p.brand.lower()} {t}"
    cat = w.categories[t]
    brands = sorted(b for b in w.by_brand if b != p.brand)
    unrelated = sorted(c for c in w.categories if c != t and c not in cat.complements)
    relation = RELATIONS[deck.draw()]
    if relation == "complement" and not cat.complements:
        relation = "narrowing"
    if relation == "narrowing":
        q2 = f"{q1} {p.color.lower()}"
    elif relation == "substitute":
        q2 = f"{rng.choice(brands).lower()} {t}"
    elif relation == "complement":
        q2 = rng.choice(sorted(cat.complements))
    else:
        q2 = rng.choice(unrelated)
    labels = list(RELATIONS)
    rng.shuffle(labels)
    opts = "".join(f"{i}. {label}\n" for i, label in enumerate(labels))
    prompt = (
        "Which of the following statements best describes the relation from query "
        f'"{q1}" to query "{q2}"?\n{opts}Answer: '
    )
    return Built(prompt, labels.index(relation), p.locale, (p.id,))


def _pick(
    rng: random.Random, pool: list[Product], n: int, used: set[str], w: World, locale: str
) -> list[Product]:
    """Up to n products of distinct, unused families, same locale first."""
    fresh = [q for q in pool if w.family_key(q) not in used]
    same = [q for q in fresh if q.locale == locale]
    # Japanese titles stay out of other locales' lists (and vice versa): cleaning rejects them.
    rest = [q for q in fresh if q.locale != locale and (q.locale == "JP") == (locale == "JP")]
    rng.shuffle(same)
    rng.shuffle(rest)
    out: list[Product] = []
    for q in same + rest:
        fk = w.family_key(q)
        if fk in used:
            continue
        used.add(fk)
        out.append(q)
        if len(out) == n:
            break
    return out


def _task12(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    t, tname = w.type_of.get(p.id), w.type_name(p)
    if k > 1 or not (t and tname and p.brand):
        return None
    used = {w.family_key(p)}
    subs = _pick(rng, [q for q in w.by_type[t] if q.brand != p.brand], 2, used, w, p.locale)
    comps = _pick(
        rng, [q for q in w.by_brand[p.brand] if w.type_of[q.id] != t], 1, used, w, p.locale
    )
    noise_pool = [q for q in w.products if q.brand != p.brand and w.type_of[q.id] != t]
    noise = _pick(rng, noise_pool, 4 - len(subs) - len(comps), used, w, p.locale)
    cands = [(p, 1.0)] + [(q, 0.1) for q in subs] + [(q, 0.01) for q in comps]
    cands += [(q, 0.0) for q in noise]
    if len(cands) != 5:
        return None
    rng.shuffle(cands)
    listing = "".join(f"{i}. {q.title}\n" for i, (q, _) in enumerate(cands, start=1))
    query = f"{p.brand.lower()} {tname.lower()}"
    prompt = (
        f"A user has made a query with keyword '{query}'. Given the following numbered list of "
        "5 products, please rank the products according their relevance with the query. \n"
        f"Product List: \n{listing}You should output a permutation of 1 to 5. There should be "
        "a comma separating two numbers. Each product and its number should appear only once "
        "in the output. Only respond with the ranking results. Do not say any word or "
        "explanations. \nOutput: "
    )
    weights = [1 if r == 1.0 else 0 if r == 0.0 else r for _, r in cands]
    return Built(prompt, weights, p.locale, tuple(q.id for q, _ in cands))


def _task14(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    t = w.type_of.get(p.id)
    if k > 1 or not (p.brand and t):
        return None
    comps = set(w.categories[t].complements)
    used = {w.family_key(p)}
    # Bought together: the same brand's other products, then complementary product types.
    same = _pick(
        rng, [q for q in w.by_brand[p.brand] if w.type_of[q.id] != t], 2, used, w, p.locale
    )
    comp_pool = [q for q in w.products if q.brand != p.brand and w.type_of[q.id] in comps]
    same += _pick(rng, comp_pool, 3 - len(same), used, w, p.locale)
    noise_pool = [
        q
        for q in w.products
        if q.brand != p.brand and w.type_of[q.id] not in comps and w.type_of[q.id] != t
    ]
    noise = _pick(rng, noise_pool, 5, used, w, p.locale)
    if len(same) < 3 or len(noise) < 5:
        return None
    cands = same + noise
    rng.shuffle(cands)
    answer = sorted(cands.index(q) + 1 for q in same)
    listing = "".join(f"{i}. {q.title}\n" for i, q in enumerate(cands, start=1))
    prompt = (
        f"A user on an online shopping website has just purchased a product '{p.title}'. The "
        "following numbered list contains 8 products. Please select 3 products from the list "
        f"that the user may also purchase.\nProduct List: \n{listing}You should output three "
        "numbers, separated with comma. Do not give explanations.\nOutput: "
    )
    return Built(prompt, answer, p.locale, (p.id, *(q.id for q in cands)))


def _task15(w: World, r: Review, k: int, rng: random.Random, deck: Deck) -> Built | None:
    hit = _review_product(w, r)
    if hit is None or k > 0:
        return None
    p, t = hit
    prompt = (
        "Instructions: Evaluate the following product review on a scale of 1 to 5, with 1 being "
        f"very negative and 5 being very positive. \nInput: a review text for a(n) {t} product\n"
        f"{r.title}\n{r.text}\nOutput:\nAnswer: "
    )
    return Built(prompt, r.rating, p.locale, (r.key,))


def _keywords(w: World, p: Product) -> str | None:
    en = w.english(p)
    t = w.type_of.get(p.id)
    if not (en and t and p.brand and en.material):
        return None
    return f"{p.brand.lower()}, {t}, {en.material.lower()}"


def _task16(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    correct = _keywords(w, p)
    if k > 0 or p.language in ENGLISH or not (correct and p.desc):
        return None
    fams = sorted({w.family_key(q) for q in w.products if q.brand != p.brand})
    others = _distinct(
        [kw for fk in rng.sample(fams, min(8, len(fams))) if (kw := _keywords(w, w.family[fk][0]))],
        {correct},
    )
    if len(others) < 3:
        return None
    opts, pos = _options(rng, deck, correct, others[:3])
    prompt = (
        "Given the following product, which of the following keyword sets is most suitable for "
        f"it?\nProduct Title: {p.title}\nProduct Description: {p.desc}\n{opts}Answer: "
    )
    return Built(prompt, pos, p.locale, (p.id,))


def _task17(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    if p.language not in ENGLISH:
        return None
    targets = sorted(
        (q for q in w.siblings(p) if q.language and q.language not in ENGLISH),
        key=lambda q: (q.language or "", q.id),
    )
    by_lang = {q.language: q for q in targets}
    langs = sorted(by_lang)
    if k >= len(langs):
        return None
    lang = langs[(k + sum(map(ord, p.id))) % len(langs)]
    q = by_lang[lang]
    prompt = (
        f"A product entitled '{p.title}' exists on an online shopping website. Generate an "
        f"adequate title for the product when it appears on a(n) {LANGUAGE_NAME[lang]} online "
        "shopping website.\nOutput: "
    )
    metric = "jp-bleu" if lang == "ja" else "bleu"
    return Built(prompt, q.title, q.locale, (p.id, q.id), metric)


def _task18(w: World, p: Product, k: int, rng: random.Random, deck: Deck) -> Built | None:
    sibs = sorted(
        (q for q in w.siblings(p) if q.desc and q.language != p.language), key=lambda q: q.id
    )
    if k > 0 or not (p.desc and sibs):
        return None
    same = rng.choice(sibs)
    fams = sorted({w.family_key(q) for q in w.products if q.brand != p.brand})
    others = []
    for fk in rng.sample(fams, min(12, len(fams))):
        cands = [q for q in w.family[fk] if q.desc and q.language != p.language]
        if cands:
            others.append(rng.choice(cands).desc or "")
    others = _distinct(others, {same.desc or ""})
    if len(others) < 3:
        return None
    opts, pos = _options(rng, deck, same.desc or "", others[:3])
    prompt = (
        f"A product with description '{p.desc}' exists on an online shopping website. Which of "
        "the following descriptions may describe the same product in a different language?\n"
        f"{opts}Answer: "
    )
    return Built(prompt, pos, p.locale, (p.id, same.id))


@dataclass(frozen=True)
class TemplateTask:
    """How the template generator builds a task: from which records, with which builder."""

    anchor: str
    build: Builder
    needs_categories: bool = True


TEMPLATE_TASKS: Registry[TemplateTask] = Registry("template task", error=SourceError)
"""The tasks the template generator builds, by ShopBench task name."""
TEMPLATE_TASKS.add("task1", TemplateTask("categories", _task1))
TEMPLATE_TASKS.add("task2", TemplateTask("categories", _task2))
TEMPLATE_TASKS.add("task4", TemplateTask("products", _task4))
TEMPLATE_TASKS.add("task5", TemplateTask("products", _task5, needs_categories=False))
TEMPLATE_TASKS.add("task6", TemplateTask("reviews", _task6))
TEMPLATE_TASKS.add("task7", TemplateTask("reviews", _task7))
TEMPLATE_TASKS.add("task11", TemplateTask("products", _task11))
TEMPLATE_TASKS.add("task12", TemplateTask("products", _task12))
TEMPLATE_TASKS.add("task14", TemplateTask("products", _task14))
TEMPLATE_TASKS.add("task15", TemplateTask("reviews", _task15))
TEMPLATE_TASKS.add("task16", TemplateTask("products", _task16))
TEMPLATE_TASKS.add("task17", TemplateTask("products", _task17, needs_categories=False))
TEMPLATE_TASKS.add("task18", TemplateTask("products", _task18, needs_categories=False))


def _anchors(w: World, anchor: str) -> list[Any]:
    if anchor == "products":
        return list(w.products)
    if anchor == "reviews":
        return list(w.reviews)
    return [w.categories[c] for c in sorted(w.categories)]


def to_row(task: TaskSpec, built: Built, generator: str = "template") -> dict[str, Any]:
    """A built example as a ShopBench dev-format row (plus ``meta``)."""
    return {
        "input_field": built.prompt,
        "output_field": built.answer,
        "task_name": task.name,
        "task_type": task.task_type,
        "metric": built.metric or task.metric,
        "is_multiple_choice": task.is_multiple_choice,
        "track": task.track,
        "meta": {
            "generator": generator,
            "locale": built.locale,
            "source_ids": list(built.source_ids),
        },
    }


def template_tasks(catalogue: Catalogue, names: list[str] | None) -> list[TaskSpec]:
    """The catalogue tasks the template generator builds (all it can when ``names`` is empty).

    Raises:
        SourceError: A named task has no template builder.
    """
    if names:
        missing = [n for n in names if n not in TEMPLATE_TASKS]
        if missing:
            raise SourceError(
                f"`data.synthesis.tasks`: the template generator cannot build {missing[0]!r} "
                f"(it builds {', '.join(TEMPLATE_TASKS)})"
            )
        return [catalogue.get(n) for n in names]
    return [t for t in catalogue.select(None) if t.name in TEMPLATE_TASKS]


def generate_template(
    sources: Sources,
    catalogue: Catalogue,
    tasks: list[str] | None,
    products_per_task: int,
    examples_per_product: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Build examples for each task from the source records, deterministically.

    For each task, ``products_per_task`` anchor records (products, reviews or categories,
    by task) are sampled with a seeded generator, and up to ``examples_per_product``
    examples (different questions or distractors) are built from each.

    Args:
        sources: The source records.
        catalogue: The task catalogue (task types, metrics, tracks).
        tasks: Task names (empty/None: every task the generator can build).
        products_per_task: Anchor records per task.
        examples_per_product: Examples per anchor record.
        seed: Sampling seed.

    Returns:
        ShopBench dev-format rows (with a ``meta`` object), tasks in order.

    Raises:
        SourceError: A task needs a source that is missing.
    """
    w = World(sources)
    rows: list[dict[str, Any]] = []
    for task in template_tasks(catalogue, tasks):
        spec = TEMPLATE_TASKS[task.name]
        if spec.needs_categories and not sources.categories:
            raise SourceError(
                f"task {task.name} needs `data.sources.categories` (product types are read "
                "off titles with the category names)"
            )
        if spec.anchor == "reviews" and not sources.reviews:
            raise SourceError(f"task {task.name} needs `data.sources.reviews`")
        if spec.anchor == "products" and not sources.products:
            raise SourceError(f"task {task.name} needs `data.sources.products`")
        rng = random.Random(f"{seed}:{task.name}")
        deck = Deck(random.Random(f"{seed}:{task.name}:deck"), 4)
        pool = _anchors(w, spec.anchor)
        rng.shuffle(pool)
        taken = 0
        for anchor in pool:
            if taken >= products_per_task:
                break
            built = [
                b
                for k in range(examples_per_product)
                if (b := spec.build(w, anchor, k, rng, deck)) is not None
            ]
            if built:
                taken += 1
                rows += [to_row(task, b) for b in built]
    return rows
