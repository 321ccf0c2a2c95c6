"""Distinct shop texts for the scoring benchmarks, in the prompt layouts of the development
set's generation tasks: category explanations (task1, ``sent-transformer``), reviews with an
aspect keyphrase (task6, ``rougel``) and product titles rendered in German, French, Spanish,
Italian (task17, ``bleu``) or Japanese (``jp-bleu``).

Texts are composed from word lists (products, materials, features, colours, uses, review
sentences, each with its translations), so they read like shop data and vary in length the
way it does; a :class:`ShopTexts` never returns the same prompt or reference twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# English name, kind, what it does; German, French, Spanish, Italian, Japanese names.
PRODUCTS = [
    ("pepper mill", "kitchen tool", "grinds whole peppercorns into fresh pepper",
     "Pfeffermühle", "moulin à poivre", "molinillo de pimienta", "macinapepe", "ペッパーミル"),
    ("desk lamp", "light", "lights a work surface for reading and writing",
     "Schreibtischlampe", "lampe de bureau", "lámpara de escritorio", "lampada da scrivania",
     "デスクライト"),
    ("water bottle", "container", "carries cold or hot drinks on the go",
     "Trinkflasche", "gourde", "botella de agua", "borraccia", "水筒"),
    ("hiking backpack", "bag", "carries food, water and clothing on long walks",
     "Wanderrucksack", "sac à dos de randonnée", "mochila de senderismo", "zaino da trekking",
     "登山リュック"),
    ("bike lock", "security device", "fastens a bicycle to a fixed object so it stays put",
     "Fahrradschloss", "antivol de vélo", "candado de bicicleta", "lucchetto per bici",
     "自転車ロック"),
    ("blender", "kitchen appliance", "mixes, crushes and purees food and drinks",
     "Standmixer", "blender", "batidora", "frullatore", "ミキサー"),
    ("yoga mat", "exercise mat", "cushions the body during stretching and floor exercises",
     "Yogamatte", "tapis de yoga", "esterilla de yoga", "tappetino yoga", "ヨガマット"),
    ("phone case", "protective cover", "shields a phone from drops, dust and scratches",
     "Handyhülle", "coque de téléphone", "funda de móvil", "custodia per telefono",
     "スマホケース"),
    ("electric kettle", "kitchen appliance", "boils water quickly for tea and coffee",
     "Wasserkocher", "bouilloire électrique", "hervidor eléctrico", "bollitore elettrico",
     "電気ケトル"),
    ("rain boot", "waterproof shoe", "keeps feet dry in rain, mud and puddles",
     "Gummistiefel", "botte de pluie", "bota de lluvia", "stivale da pioggia", "レインブーツ"),
    ("camping tent", "portable shelter", "keeps campers dry and warm outdoors",
     "Campingzelt", "tente de camping", "tienda de campaña", "tenda da campeggio",
     "キャンプテント"),
    ("travel pillow", "neck support", "holds the head upright while sleeping in a seat",
     "Reisekissen", "oreiller de voyage", "almohada de viaje", "cuscino da viaggio",
     "トラベルピロー"),
    ("cutting board", "kitchen surface", "protects counters and knives while food is sliced",
     "Schneidebrett", "planche à découper", "tabla de cortar", "tagliere", "まな板"),
    ("wall clock", "timepiece", "shows the time to a whole room",
     "Wanduhr", "horloge murale", "reloj de pared", "orologio da parete", "掛け時計"),
    ("pet bed", "cushion", "gives a dog or cat a warm and quiet place to sleep",
     "Haustierbett", "panier pour animaux", "cama para mascotas", "cuccia", "ペットベッド"),
    ("lunch box", "food container", "keeps a packed meal fresh until it is eaten",
     "Brotdose", "boîte à lunch", "fiambrera", "portapranzo", "弁当箱"),
    ("shower head", "bathroom fitting", "sprays water evenly for washing",
     "Duschkopf", "pommeau de douche", "alcachofa de ducha", "soffione doccia",
     "シャワーヘッド"),
    ("garden hose", "flexible tube", "carries water from a tap to plants and lawns",
     "Gartenschlauch", "tuyau d'arrosage", "manguera de jardín", "tubo da giardino",
     "ガーデンホース"),
]  # fmt: skip
MATERIALS = [
    ("stainless steel", "Edelstahl", "en acier inoxydable", "de acero inoxidable",
     "in acciaio inox", "ステンレス"),
    ("bamboo", "Bambus", "en bambou", "de bambú", "in bambù", "竹製"),
    ("silicone", "Silikon", "en silicone", "de silicona", "in silicone", "シリコン"),
    ("aluminium", "Aluminium", "en aluminium", "de aluminio", "in alluminio", "アルミ"),
    ("ceramic", "Keramik", "en céramique", "de cerámica", "in ceramica", "セラミック"),
    ("leather", "Leder", "en cuir", "de cuero", "in pelle", "レザー"),
    ("nylon", "Nylon", "en nylon", "de nailon", "in nylon", "ナイロン"),
    ("recycled plastic", "Recyclingkunststoff", "en plastique recyclé",
     "de plástico reciclado", "in plastica riciclata", "再生プラスチック"),
]  # fmt: skip
FEATURES = [
    ("waterproof", "wasserdicht", "imperméable", "impermeable", "impermeabile", "防水"),
    ("foldable", "faltbar", "pliable", "plegable", "pieghevole", "折りたたみ"),
    ("rechargeable", "wiederaufladbar", "rechargeable", "recargable", "ricaricabile", "充電式"),
    ("lightweight", "leicht", "léger", "ligero", "leggero", "軽量"),
    ("non-slip", "rutschfest", "antidérapant", "antideslizante", "antiscivolo", "滑り止め"),
    ("dishwasher safe", "spülmaschinenfest", "compatible lave-vaisselle",
     "apto para lavavajillas", "lavabile in lavastoviglie", "食洗機対応"),
    ("adjustable", "verstellbar", "réglable", "ajustable", "regolabile", "調節可能"),
    ("insulated", "isoliert", "isotherme", "aislado", "termico", "保温"),
]  # fmt: skip
COLOURS = [
    ("Black", "Schwarz", "noir", "negro", "nero", "ブラック"),
    ("White", "Weiß", "blanc", "blanco", "bianco", "ホワイト"),
    ("Navy", "Marineblau", "bleu marine", "azul marino", "blu navy", "ネイビー"),
    ("Green", "Grün", "vert", "verde", "verde", "グリーン"),
    ("Grey", "Grau", "gris", "gris", "grigio", "グレー"),
    ("Red", "Rot", "rouge", "rojo", "rosso", "レッド"),
    ("Pink", "Rosa", "rose", "rosa", "rosa", "ピンク"),
    ("Beige", "Beige", "beige", "beige", "beige", "ベージュ"),
]
LANGUAGES = ("German", "French", "Spanish", "Italian", "Japanese")
USES = [
    "small apartments", "camping trips", "daily commutes", "busy kitchens", "home offices",
    "children's rooms", "long flights", "outdoor parties", "students", "weekend hikes",
    "gift giving", "holiday cottages",
]  # fmt: skip
QUALITIES = [
    "easy to clean", "durable", "light to carry", "resistant to rust", "gentle on surfaces",
    "comfortable to hold", "long lasting", "simple to store",
]  # fmt: skip
# Aspect, adjectives, endings of a review keyphrase.
ASPECTS = [
    ("size", ["small", "large", "roomy", "tight", "compact"],
     ["for my needs", "for a family", "in the cupboard", "around the edges", "for travel",
      "next to the old one"]),
    ("noise", ["quiet", "loud", "silent", "noisy", "rattly"],
     ["at night", "in the morning", "on the top setting", "compared to my old one",
      "when it starts", "with the lid on"]),
    ("quality", ["sturdy", "flimsy", "solid", "well made", "cheap feeling"],
     ["for the price", "after a month", "out of the box", "for daily use", "at the seams",
      "after the first wash"]),
    ("comfort", ["comfortable", "soft", "stiff", "cosy", "supportive"],
     ["on long days", "for my back", "after hours of use", "on cold nights",
      "for side sleepers", "on hard floors"]),
    ("color", ["bright", "faded", "vivid", "dull", "true to the picture"],
     ["in daylight", "after washing", "compared to the photos", "in person",
      "under kitchen lights", "after a few weeks"]),
    ("weight", ["light", "heavy", "bulky", "easy to lift", "awkward to carry"],
     ["on the trail", "for a child", "with one hand", "when full", "up the stairs",
      "in a suitcase"]),
]  # fmt: skip
DEGREES = [
    "very", "surprisingly", "a bit too", "quite", "really", "not very", "slightly",
    "extremely", "perfectly", "fairly", "way too", "just", "noticeably", "rather",
]  # fmt: skip
OPENINGS = [
    "Setup took five minutes.", "It arrived a day early and well packed.",
    "I replaced a cheaper one with it.", "My sister recommended it.",
    "The instructions were short but clear.", "I have used it every day for three weeks.",
]  # fmt: skip
CLOSINGS = [
    "I would buy it again.", "My partner likes it too.", "Four stars overall.",
    "Returned the first one for a scratch, the second is fine.",
    "Not perfect, but good value.", "Would recommend to friends.",
]  # fmt: skip

TASK1 = "Instructions: Tell me what this product category is about\nInput: {category}\nOutput:"
TASK6 = (
    "You are given a user review to a(n) {product} product and an aspect covered in the "
    "review. \nPlease extract the keyphrase from the review that mentions the given aspect. "
    "\nYou should only extract ONLY ONE keyphrase from the review. \nYou should not generate "
    "new keyphrases that do not exist in the review.\nDo not give explanations or irrelevant "
    "text. Generate short keyphrases, not whole sentences.  \nReview: {review}\n"
    "Aspect: {aspect}\nOutput: \n"
)
TASK17 = (
    "A product entitled '{title}' exists on an online shopping website. Generate an adequate "
    "title for the product when it appears on a(n) {language} online shopping website.\n"
    "Output: "
)
_SYLLABLES = ["lu", "mo", "ra", "tek", "ka", "zen", "vi", "nor", "sol", "qua", "fin", "do"]


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _title(words: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in words.split())


class ShopTexts:
    """Distinct (prompt, reference) pairs per generation metric.

    Args:
        rng: The random source.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.makers: dict[str, Callable[[], tuple[str, str]]] = {
            "sent-transformer": self._category,
            "rougel": self._review,
            "bleu": lambda: self._translation(rng.choice(LANGUAGES[:4])),
            "jp-bleu": lambda: self._translation("Japanese"),
        }

    def pair(self, metric: str) -> tuple[str, str]:
        """A new (prompt, reference) for a row scored with ``metric``."""
        for _ in range(1000):
            prompt, ref = self.makers[metric]()
            if prompt not in self.used and ref not in self.used:
                self.used.update((prompt, ref))
                return prompt, ref
        raise RuntimeError(f"no new {metric} text left: use fewer rows")

    def _category(self) -> tuple[str, str]:
        c = self.rng.choice
        prod, kind, does, *_ = c(PRODUCTS)
        mat, feat, use, quality = c(MATERIALS)[0], c(FEATURES)[0], c(USES), c(QUALITIES)
        category = _title(f"{feat} {mat} {prod}") + f" for {_title(use)}"
        ref = c(
            [
                f"{_a(feat).capitalize()} {mat} {prod} is {_a(kind)} that {does}. It is made "
                f"of {mat}, which makes it {quality}, and it is popular for {use}.",
                f"This {kind} {does}. The {mat} version is {quality} and {feat}, a good "
                f"choice for {use}.",
                f"{_title(prod)}: {_a(feat)} {kind} made of {mat} that {does}, often bought "
                f"for {use} because it is {quality}.",
            ]
        )
        return TASK1.format(category=category), ref

    def _review(self) -> tuple[str, str]:
        c = self.rng.choice
        prod = c(PRODUCTS)[0]
        aspect, adjectives, endings = c(ASPECTS)
        keyphrase = f"{c(DEGREES)} {c(adjectives)} {c(endings)}"
        review = (
            f"I bought this {prod} for {c(USES)}. {c(OPENINGS)} It is {keyphrase}. {c(CLOSINGS)}"
        )
        return TASK6.format(product=prod, review=review, aspect=aspect), keyphrase

    def _translation(self, language: str) -> tuple[str, str]:
        c = self.rng.choice
        i = LANGUAGES.index(language) + 1
        prod, mat, colour = c(PRODUCTS), c(MATERIALS), c(COLOURS)
        f1, f2 = self.rng.sample(FEATURES, 2)
        brand = "".join(self.rng.sample(_SYLLABLES, 2)).capitalize()
        size = c(["250ml", "500ml", "750ml", "1L", "20L", "30L", "2 Pack", "1.5m", "10m"])
        title = (
            f"{brand} {_title(mat[0])} {_title(prod[0])} {size}, {_title(f1[0])}, "
            f"{_title(f2[0])}, {colour[0]}"
        )
        name = prod[3 + i - 1]
        if language == "Japanese":
            ref = f"{brand} {mat[i]} {name} {size} {f1[i]} {f2[i]} {colour[i]}"
        elif language == "German":
            ref = f"{brand} {name} aus {mat[i]} {size}, {f1[i]}, {f2[i]}, {colour[i]}"
        else:
            ref = f"{brand} {name} {mat[i]} {size}, {f1[i]}, {f2[i]}, {colour[i]}"
        return TASK17.format(title=title, language=language), ref
