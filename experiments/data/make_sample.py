"""Build the project's own multi-locale sample data (deterministic).

Writes, next to this file:

* ``products.jsonl`` — products in the Amazon-M2 format (id, locale, title, price, brand,
  color, size, model, material, author, desc) over US/UK/DE/JP/ES/IT/FR; the pool the
  ``synthesize`` stage draws training examples from,
* ``reviews.jsonl`` — user reviews of those products (rating, title, text, product id, and the
  aspect phrases each review mentions),
* ``categories.csv`` — the product categories (description, attributes, complementary
  categories and the category name in each language),
* ``heldout/products.jsonl`` and ``heldout/reviews.jsonl`` — the same kind of records for a
  disjoint set of brands and products, used only to build the evaluation set
  ``eval_tiny.jsonl`` (``python -m harness.data.make_eval``).

Every name here is invented; nothing is copied from a public data set.
Run: ``python experiments/data/make_sample.py``.
"""

from __future__ import annotations

import csv
import io
import json
import random
import string
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCALES = ("US", "UK", "DE", "JP", "ES", "IT", "FR")
LANG = {"US": "en", "UK": "en", "DE": "de", "JP": "ja", "ES": "es", "IT": "it", "FR": "fr"}

# name in en, de, ja, es, it, fr; materials; sizes; attributes; complements; description.
TYPES: dict[str, dict[str, object]] = {
    "t-shirt": {
        "names": ("T-Shirt", "Tシャツ", "camiseta", "maglietta", "tee-shirt"),
        "materials": ("cotton", "polyester"),
        "sizes": ("S", "M", "L", "XL"),
        "attributes": ("neckline", "sleeve length"),
        "complements": ("hoodie", "running shoes"),
        "aspects": ("fit", "fabric", "color", "stitching", "comfort"),
        "description": "A t-shirt is a short-sleeved casual top without a collar, usually "
        "made of knitted cotton.",
    },
    "hoodie": {
        "names": ("Kapuzenpullover", "パーカー", "sudadera", "felpa", "sweat à capuche"),
        "materials": ("cotton", "polyester"),
        "sizes": ("S", "M", "L", "XL"),
        "attributes": ("hood drawstring", "kangaroo pocket"),
        "complements": ("t-shirt",),
        "aspects": ("fit", "fabric", "hood", "pockets", "warmth"),
        "description": "A hoodie is a sweatshirt with a hood, often with a front pocket, worn "
        "for warmth and comfort.",
    },
    "running shoes": {
        "names": ("Laufschuhe", "ランニングシューズ", "zapatillas", "scarpe da corsa", "baskets"),
        "materials": ("nylon", "rubber", "polyester"),
        "sizes": ("EU 38", "EU 40", "EU 42", "EU 44"),
        "attributes": ("heel drop", "shoe width"),
        "complements": ("water bottle", "t-shirt"),
        "aspects": ("fit", "sole", "grip", "cushioning", "laces"),
        "description": "Running shoes are lightweight athletic shoes with cushioned soles "
        "designed to absorb impact while running.",
    },
    "backpack": {
        "names": ("Rucksack", "リュックサック", "mochila", "zaino", "sac à dos"),
        "materials": ("nylon", "polyester", "leather"),
        "sizes": ("20 L", "25 L", "30 L"),
        "attributes": ("laptop compartment size", "backpack volume"),
        "complements": ("water bottle", "notebook", "umbrella"),
        "aspects": ("straps", "zipper", "pockets", "capacity", "padding"),
        "description": "A backpack is a bag carried on the back with two shoulder straps, used "
        "for books, laptops or travel gear.",
    },
    "water bottle": {
        "names": ("Trinkflasche", "水筒", "botella de agua", "borraccia", "gourde"),
        "materials": ("stainless steel", "plastic", "glass", "aluminium"),
        "sizes": ("500 ml", "750 ml", "1 L"),
        "attributes": ("bottle capacity", "bpa free"),
        "complements": ("backpack", "yoga mat", "running shoes"),
        "aspects": ("lid", "insulation", "capacity", "leaks", "cleaning"),
        "description": "A water bottle is a reusable container for carrying drinking water, "
        "usually closed with a screw or flip lid.",
    },
    "coffee mug": {
        "names": ("Kaffeebecher", "マグカップ", "taza", "tazza", "mug"),
        "materials": ("ceramic", "glass", "stainless steel"),
        "sizes": ("350 ml", "450 ml"),
        "attributes": ("microwave safe", "mug handle"),
        "complements": (),
        "aspects": ("handle", "glaze", "capacity", "print", "heat"),
        "description": "A coffee mug is a sturdy cup with a handle for drinking hot beverages "
        "such as coffee or tea.",
    },
    "frying pan": {
        "names": ("Bratpfanne", "フライパン", "sartén", "padella", "poêle"),
        "materials": ("aluminium", "stainless steel"),
        "sizes": ("24 cm", "28 cm"),
        "attributes": ("induction compatible", "nonstick coating"),
        "complements": ("kitchen knife", "cutting board"),
        "aspects": ("coating", "handle", "heat", "weight", "cleaning"),
        "description": "A frying pan is a flat-bottomed pan with low sides used for frying, "
        "searing and browning food.",
    },
    "kitchen knife": {
        "names": ("Küchenmesser", "包丁", "cuchillo", "coltello", "couteau"),
        "materials": ("stainless steel",),
        "sizes": ("15 cm", "20 cm"),
        "attributes": ("blade length", "blade hardness"),
        "complements": ("cutting board", "frying pan"),
        "aspects": ("blade", "handle", "balance", "edge", "weight"),
        "description": "A kitchen knife is a knife with a sharp blade used to cut, slice and "
        "chop food.",
    },
    "cutting board": {
        "names": ("Schneidebrett", "まな板", "tabla de cortar", "tagliere", "planche à découper"),
        "materials": ("wood", "bamboo", "plastic"),
        "sizes": ("30 x 20 cm", "40 x 30 cm"),
        "attributes": ("juice groove", "board thickness"),
        "complements": ("kitchen knife", "frying pan"),
        "aspects": ("surface", "groove", "thickness", "finish", "cleaning"),
        "description": "A cutting board is a durable board on which food is cut and chopped, "
        "protecting the counter and the knife edge.",
    },
    "desk lamp": {
        "names": ("Schreibtischlampe", "デスクライト", "lámpara", "lampada", "lampe"),
        "materials": ("aluminium", "plastic"),
        "sizes": ("40 cm", "45 cm"),
        "attributes": ("color temperature", "dimmable"),
        "complements": ("notebook", "keyboard"),
        "aspects": ("brightness", "switch", "base", "arm", "light"),
        "description": "A desk lamp is a small adjustable lamp that lights a work surface for "
        "reading or writing.",
    },
    "phone case": {
        "names": ("Handyhülle", "スマホケース", "funda", "custodia", "coque"),
        "materials": ("silicone", "leather", "plastic"),
        "sizes": ("6.1 inch", "6.7 inch"),
        "attributes": ("compatible phone model", "drop protection"),
        "complements": ("usb cable", "headphones"),
        "aspects": ("buttons", "grip", "edges", "cutouts", "protection"),
        "description": "A phone case is a protective cover that wraps a mobile phone to "
        "prevent scratches and damage from drops.",
    },
    "usb cable": {
        "names": ("USB-Kabel", "USBケーブル", "cable USB", "cavo USB", "câble USB"),
        "materials": ("nylon", "plastic"),
        "sizes": ("1 m", "2 m"),
        "attributes": ("connector type", "cable length"),
        "complements": ("phone case", "headphones"),
        "aspects": ("connector", "charging", "length", "braiding", "connection"),
        "description": "A USB cable connects devices to chargers and computers to transfer "
        "power and data.",
    },
    "headphones": {
        "names": ("Kopfhörer", "ヘッドホン", "auriculares", "cuffie", "casque"),
        "materials": ("plastic", "aluminium"),
        "sizes": (None,),
        "attributes": ("noise cancellation", "headphone battery life"),
        "complements": ("usb cable", "phone case"),
        "aspects": ("sound", "battery", "bass", "ear cushions", "connection"),
        "description": "Headphones are a pair of small speakers worn over or on the ears for "
        "listening to audio privately.",
    },
    "wireless mouse": {
        "names": ("Funkmaus", "ワイヤレスマウス", "ratón", "mouse wireless", "souris"),
        "materials": ("plastic",),
        "sizes": (None,),
        "attributes": ("dpi", "mouse battery life"),
        "complements": ("mouse pad", "keyboard"),
        "aspects": ("buttons", "scroll wheel", "battery", "grip", "connection"),
        "description": "A wireless mouse is a hand-held pointing device that controls a "
        "computer cursor without a cable.",
    },
    "mouse pad": {
        "names": (
            "Mauspad",
            "マウスパッド",
            "alfombrilla",
            "tappetino per mouse",
            "tapis de souris",
        ),
        "materials": ("rubber", "polyester"),
        "sizes": ("30 x 25 cm", "80 x 30 cm"),
        "attributes": ("non-slip base", "stitched edges"),
        "complements": ("wireless mouse", "keyboard"),
        "aspects": ("surface", "edges", "base", "size", "smell"),
        "description": "A mouse pad is a flat mat that gives a computer mouse a smooth, "
        "consistent surface.",
    },
    "keyboard": {
        "names": ("Tastatur", "キーボード", "teclado", "tastiera", "clavier"),
        "materials": ("aluminium", "plastic"),
        "sizes": (None,),
        "attributes": ("key switch type", "keyboard layout"),
        "complements": ("wireless mouse", "mouse pad", "desk lamp"),
        "aspects": ("keys", "backlight", "layout", "noise", "connection"),
        "description": "A keyboard is an input device with keys for typing letters, numbers "
        "and commands into a computer.",
    },
    "yoga mat": {
        "names": ("Yogamatte", "ヨガマット", "esterilla", "tappetino yoga", "tapis de yoga"),
        "materials": ("rubber", "polyester"),
        "sizes": ("183 x 61 cm",),
        "attributes": ("mat thickness", "non-slip surface"),
        "complements": ("water bottle",),
        "aspects": ("grip", "thickness", "cushioning", "smell", "strap"),
        "description": "A yoga mat is a thin cushioned mat that gives grip and comfort during "
        "yoga and floor exercises.",
    },
    "dog leash": {
        "names": ("Hundeleine", "犬用リード", "correa", "guinzaglio", "laisse"),
        "materials": ("nylon", "leather"),
        "sizes": ("1.5 m", "2 m"),
        "attributes": ("leash length", "reflective stitching"),
        "complements": ("pet bed",),
        "aspects": ("clip", "handle", "length", "stitching", "strength"),
        "description": "A dog leash is a strap attached to a dog's collar or harness to lead "
        "and control it on walks.",
    },
    "pet bed": {
        "names": ("Hundebett", "ペットベッド", "cama para perro", "cuccia", "panier"),
        "materials": ("polyester", "cotton"),
        "sizes": ("60 cm", "80 cm"),
        "attributes": ("washable cover", "orthopedic foam"),
        "complements": ("dog leash",),
        "aspects": ("cushion", "cover", "size", "filling", "bottom"),
        "description": "A pet bed is a cushioned bed where a dog or cat can sleep and rest "
        "comfortably.",
    },
    "notebook": {
        "names": ("Notizbuch", "ノート", "cuaderno", "quaderno", "carnet"),
        "materials": ("paper",),
        "sizes": ("A5", "A4"),
        "attributes": ("page count", "ruling"),
        "complements": ("pen set", "desk lamp", "backpack"),
        "aspects": ("paper", "binding", "cover", "pages", "lines"),
        "description": "A notebook is a bound book of blank or ruled pages for writing notes.",
    },
    "pen set": {
        "names": ("Stifteset", "ペンセット", "bolígrafos", "penne", "stylos"),
        "materials": ("plastic", "aluminium"),
        "sizes": (None,),
        "attributes": ("ink color", "tip size"),
        "complements": ("notebook",),
        "aspects": ("ink", "tip", "grip", "colors", "flow"),
        "description": "A pen set is a pack of several pens, often in different colors, for "
        "writing and drawing.",
    },
    "umbrella": {
        "names": ("Regenschirm", "傘", "paraguas", "ombrello", "parapluie"),
        "materials": ("polyester", "nylon"),
        "sizes": ("100 cm",),
        "attributes": ("canopy diameter", "windproof frame"),
        "complements": ("backpack",),
        "aspects": ("canopy", "frame", "handle", "button", "wind"),
        "description": "An umbrella is a folding canopy on a frame that protects from rain and "
        "sun.",
    },
    "wall clock": {
        "names": ("Wanduhr", "掛け時計", "reloj de pared", "orologio da parete", "horloge"),
        "materials": ("wood", "glass", "plastic"),
        "sizes": ("30 cm",),
        "attributes": ("silent movement", "clock diameter"),
        "complements": (),
        "aspects": ("hands", "ticking", "numbers", "frame", "battery"),
        "description": "A wall clock is a clock hung on a wall that shows the time with hands "
        "or digits.",
    },
    "garden hose": {
        "names": ("Gartenschlauch", "ガーデンホース", "manguera", "tubo da giardino", "tuyau"),
        "materials": ("rubber", "plastic"),
        "sizes": ("15 m", "30 m"),
        "attributes": ("hose length", "hose diameter"),
        "complements": (),
        "aspects": ("fittings", "nozzle", "length", "kinks", "pressure"),
        "description": "A garden hose is a flexible tube that carries water for watering "
        "plants and cleaning outdoors.",
    },
}

# en, de, ja, es, it, fr
COLORS = {
    "black": ("Schwarz", "ブラック", "negro", "nero", "noir"),
    "white": ("Weiß", "ホワイト", "blanco", "bianco", "blanc"),
    "red": ("Rot", "レッド", "rojo", "rosso", "rouge"),
    "blue": ("Blau", "ブルー", "azul", "blu", "bleu"),
    "green": ("Grün", "グリーン", "verde", "verde", "vert"),
    "grey": ("Grau", "グレー", "gris", "grigio", "gris"),
    "pink": ("Rosa", "ピンク", "rosa", "rosa", "rose"),
    "yellow": ("Gelb", "イエロー", "amarillo", "giallo", "jaune"),
    "brown": ("Braun", "ブラウン", "marrón", "marrone", "marron"),
    "silver": ("Silber", "シルバー", "plateado", "argento", "argent"),
}
MATERIALS = {
    "cotton": ("Baumwolle", "綿", "algodón", "cotone", "coton"),
    "polyester": ("Polyester", "ポリエステル", "poliéster", "poliestere", "polyester"),
    "stainless steel": ("Edelstahl", "ステンレス", "acero inoxidable", "acciaio inox", "inox"),
    "plastic": ("Kunststoff", "プラスチック", "plástico", "plastica", "plastique"),
    "wood": ("Holz", "木製", "madera", "legno", "bois"),
    "leather": ("Leder", "革", "cuero", "pelle", "cuir"),
    "glass": ("Glas", "ガラス", "vidrio", "vetro", "verre"),
    "aluminium": ("Aluminium", "アルミ", "aluminio", "alluminio", "aluminium"),
    "ceramic": ("Keramik", "セラミック", "cerámica", "ceramica", "céramique"),
    "silicone": ("Silikon", "シリコン", "silicona", "silicone", "silicone"),
    "nylon": ("Nylon", "ナイロン", "nailon", "nylon", "nylon"),
    "rubber": ("Gummi", "ゴム", "caucho", "gomma", "caoutchouc"),
    "paper": ("Papier", "紙", "papel", "carta", "papier"),
    "bamboo": ("Bambus", "竹", "bambú", "bambù", "bambou"),
}
FEATURES = {
    "en": (
        "Ideal for everyday use.",
        "Easy to clean and maintain.",
        "A practical gift for family and friends.",
        "Built to last for years.",
    ),
    "de": (
        "Ideal für den täglichen Gebrauch.",
        "Leicht zu reinigen und zu pflegen.",
        "Ein praktisches Geschenk für Familie und Freunde.",
        "Für viele Jahre gebaut.",
    ),
    "ja": (
        "毎日の使用に最適です。",
        "お手入れが簡単です。",
        "家族や友人へのギフトにおすすめです。",
        "長く使える丈夫な作りです。",
    ),
    "es": (
        "Ideal para el uso diario.",
        "Fácil de limpiar y mantener.",
        "Un regalo práctico para la familia y los amigos.",
        "Fabricado para durar muchos años.",
    ),
    "it": (
        "Ideale per l'uso quotidiano.",
        "Facile da pulire e da mantenere.",
        "Un regalo pratico per la famiglia e gli amici.",
        "Costruito per durare a lungo.",
    ),
    "fr": (
        "Idéal pour un usage quotidien.",
        "Facile à nettoyer et à entretenir.",
        "Un cadeau pratique pour la famille et les amis.",
        "Conçu pour durer des années.",
    ),
}
LANG_INDEX = {"de": 0, "ja": 1, "es": 2, "it": 3, "fr": 4}

TRAIN_BRANDS = (
    "Norvik", "Altamar", "Brightwell", "Solenne", "Tamura", "Veloce", "Hartwood", "Lumora",
    "Quillon", "Ostara", "Marlowe", "Zentro", "Pellaro", "Fjordline", "Sakuraya", "Castellan",
    "Rivello", "Bluefinch", "Kobalt Home", "Embervale",
)  # fmt: skip
HELDOUT_BRANDS = ("Wrenfield", "Corvida", "Ytterby", "Miravel", "Halvorsen", "Nakagawa")

POSITIVE = ("great", "excellent", "perfect", "sturdy", "lovely", "solid", "reliable", "superb")
NEGATIVE = ("poor", "flimsy", "cheap", "weak", "awful", "loose", "disappointing", "terrible")
POS_TAILS = ("really happy with it", "exactly as described", "better than expected")
NEG_TAILS = ("not worth it", "really disappointed", "worse than expected")
TITLES = {
    5: ("Love it", "Excellent buy", "Five stars"),
    4: ("Very good", "Pretty good", "Happy overall"),
    3: ("It's okay", "Average", "Mixed feelings"),
    2: ("Disappointed", "Not great", "Could be better"),
    1: ("Terrible", "Waste of money", "Do not buy"),
}
SENTIMENTS = {
    5: ("+", "+", "+"),
    4: ("+", "+", "-"),
    3: ("+", "-", "0"),
    2: ("-", "-", "+"),
    1: ("-", "-", "-"),
}
DE_REVIEWS = {
    5: ("Hervorragend", "Tolle Qualität, sehr zufrieden. Würde ich wieder kaufen."),
    4: ("Gut", "Gute Verarbeitung und schnelle Lieferung. Kleine Mängel, aber insgesamt gut."),
    3: ("Geht so", "Das Produkt ist in Ordnung, aber nicht besonders gut verarbeitet."),
    2: ("Enttäuscht", "Die Qualität ist leider schlecht und die Farbe ist anders als erwartet."),
    1: ("Schrott", "Nach einer Woche kaputt. Nicht kaufen, das Geld ist es nicht wert."),
}


def _product_id(rng: random.Random, used: set[str]) -> str:
    while True:
        pid = "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))
        if pid not in used:
            used.add(pid)
            return pid


def _name(type_key: str, lang: str) -> str:
    if lang == "en":
        return type_key
    return TYPES[type_key]["names"][LANG_INDEX[lang]]  # type: ignore[index]


def _word(table: dict[str, tuple[str, ...]], key: str, lang: str) -> str:
    return key if lang == "en" else table[key][LANG_INDEX[lang]]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _title(fam: dict[str, object], lang: str) -> str:
    brand, model, size = fam["brand"], fam["model"], fam["size"]
    ptype = _name(str(fam["type"]), lang)
    color = _word(COLORS, str(fam["color"]), lang)
    material = _word(MATERIALS, str(fam["material"]), lang)
    sz = f", {size}" if size else ""
    if lang == "en":
        words = " ".join(w.capitalize() if w.islower() else w for w in ptype.split())
        return f"{brand} {words} {model} - {color.capitalize()}, {material.capitalize()}{sz}"
    if lang == "de":
        return f"{brand} {ptype} {model} aus {material} - {color}{sz}"
    if lang == "ja":
        return f"{brand} {ptype} {model} {material} {color}" + (f" {size}" if size else "")
    if lang == "es":
        return f"{brand} {_cap(ptype)} {model} de {material}, {color}{sz}"
    if lang == "it":
        return f"{brand} {_cap(ptype)} {model} in {material}, {color}{sz}"
    return f"{brand} {_cap(ptype)} {model} en {material}, {color}{sz}"


def _desc(fam: dict[str, object], lang: str) -> str:
    brand, model = fam["brand"], fam["model"]
    ptype = _name(str(fam["type"]), lang)
    color = _word(COLORS, str(fam["color"]), lang)
    material = _word(MATERIALS, str(fam["material"]), lang)
    feature = FEATURES[lang][int(fam["feature"])]  # type: ignore[call-overload]
    if lang == "en":
        return f"The {brand} {ptype} {model} is made of {material} and comes in {color}. {feature}"
    if lang == "de":
        return f"{brand} {ptype} {model}: hergestellt aus {material}, Farbe {color}. {feature}"
    if lang == "ja":
        return f"{brand}の{ptype}{model}。素材は{material}、カラーは{color}です。{feature}"
    if lang == "es":
        return (
            f"{_cap(ptype)} {model} de {brand}, fabricado en {material}, color {color}. {feature}"
        )
    if lang == "it":
        return (
            f"{_cap(ptype)} {model} di {brand}, realizzato in {material}, colore {color}. {feature}"
        )
    return f"{_cap(ptype)} {model} de {brand}, fabriqué en {material}, coloris {color}. {feature}"


def _price(rng: random.Random, locale: str, base: float) -> float:
    if locale == "JP":
        return float(round(base * 150, -1))
    factor = {"US": 1.0, "UK": 0.8, "DE": 0.95, "ES": 0.93, "IT": 0.94, "FR": 0.96}[locale]
    return round(int(base * factor) + 0.99, 2)


def _families(
    rng: random.Random, brands: tuple[str, ...], per_brand: int, models: set[str]
) -> list[dict]:
    fams = []
    types = sorted(TYPES)
    for brand in brands:
        initials = "".join(w[0] for w in brand.split()).upper()
        initials = (initials + brand[1].upper())[:2]
        for ptype in rng.sample(types, per_brand):
            spec = TYPES[ptype]
            model = f"{initials}-{rng.randint(100, 989)}"
            while model in models:
                model = f"{initials}-{rng.randint(100, 989)}"
            models.add(model)
            fams.append(
                {
                    "brand": brand,
                    "type": ptype,
                    "model": model,
                    "color": rng.choice(sorted(COLORS)),
                    "material": rng.choice(spec["materials"]),  # type: ignore[arg-type]
                    "size": rng.choice(spec["sizes"]),  # type: ignore[arg-type]
                    "feature": rng.randrange(4),
                    "base_price": rng.randint(6, 80),
                }
            )
    return fams


def _products(rng: random.Random, fams: list[dict], used: set[str]) -> list[dict]:
    out = []
    for fam in fams:
        others = [loc for loc in LOCALES if loc != "US"]
        locales = ["US", *rng.sample(others, rng.randint(2, 6))]
        for locale in sorted(locales, key=LOCALES.index):
            lang = LANG[locale]
            out.append(
                {
                    "id": _product_id(rng, used),
                    "locale": locale,
                    "title": _title(fam, lang),
                    "price": _price(rng, locale, fam["base_price"]),
                    "brand": fam["brand"],
                    "color": _word(COLORS, fam["color"], lang),
                    "size": fam["size"],
                    "model": fam["model"],
                    "material": _word(MATERIALS, fam["material"], lang),
                    "author": None,
                    "desc": _desc(fam, lang),
                }
            )
    return out


def _sentence(rng: random.Random, aspect: str, sentiment: str) -> tuple[str, str]:
    """One review sentence and the keyphrase in it that mentions the aspect."""
    if sentiment == "0":
        phrase = f"average {aspect}"
        return f"The {aspect} is just okay, an {phrase} at best.", phrase
    adj = rng.choice(POSITIVE if sentiment == "+" else NEGATIVE)
    tail = rng.choice(POS_TAILS if sentiment == "+" else NEG_TAILS)
    form = rng.randrange(3)
    if form == 0:
        phrase = f"{adj.capitalize()} {aspect}"
        return f"{phrase}, {tail}.", phrase
    if form == 1:
        phrase = f"{adj} {aspect}"
        return f"Honestly, {phrase} for the price.", phrase
    phrase = f"{adj} {aspect}"
    return f"I noticed the {phrase} right away, {tail}.", phrase


def _reviews(
    rng: random.Random, products: list[dict], fams_by_model: dict[str, dict]
) -> list[dict]:
    out = []
    for p in products:
        fam = fams_by_model[p["model"]]
        aspects_all = TYPES[fam["type"]]["aspects"]
        if p["locale"] in ("US", "UK"):
            for _ in range(rng.randint(1, 3)):
                rating = rng.randint(1, 5)
                aspects = rng.sample(aspects_all, 3)  # type: ignore[arg-type]
                sentiments = list(SENTIMENTS[rating])
                rng.shuffle(sentiments)
                sentences, phrases = [], []
                for aspect, s in zip(aspects, sentiments, strict=True):
                    text, phrase = _sentence(rng, aspect, s)
                    sentences.append(text)
                    phrases.append({"aspect": aspect, "phrase": phrase})
                out.append(
                    {
                        "product_id": p["id"],
                        "rating": rating,
                        "title": rng.choice(TITLES[rating]),
                        "text": " ".join(sentences),
                        "aspects": phrases,
                    }
                )
        elif p["locale"] == "DE" and rng.random() < 0.5:
            rating = rng.randint(1, 5)
            title, text = DE_REVIEWS[rating]
            out.append(
                {
                    "product_id": p["id"],
                    "rating": rating,
                    "title": title,
                    "text": text,
                    "aspects": [],
                }
            )
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")


def _categories_csv() -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["category", "description", "attributes", "complements", "de", "ja", "es", "it", "fr"]
    )
    comps = {k: set(v["complements"]) for k, v in TYPES.items()}  # type: ignore[arg-type]
    for k, cs in list(comps.items()):
        for c in cs:
            comps[c].add(k)
    for key in sorted(TYPES):
        spec = TYPES[key]
        w.writerow(
            [
                key,
                spec["description"],
                ";".join(spec["attributes"]),  # type: ignore[arg-type]
                ";".join(sorted(comps[key])),
                *spec["names"],  # type: ignore[misc]
            ]
        )
    return buf.getvalue()


def main() -> None:
    """Write the sample files."""
    rng = random.Random("shopbench-harness sample v1")
    used: set[str] = set()
    models: set[str] = set()
    (HERE / "categories.csv").write_text(_categories_csv(), encoding="utf-8")
    for brands, sub in ((TRAIN_BRANDS, ""), (HELDOUT_BRANDS, "heldout/")):
        fams = _families(rng, brands, 3, models)
        products = _products(rng, fams, used)
        reviews = _reviews(rng, products, {f["model"]: f for f in fams})
        _write_jsonl(HERE / f"{sub}products.jsonl", products)
        _write_jsonl(HERE / f"{sub}reviews.jsonl", reviews)
        print(
            f"{sub or './'}: {len(fams)} families, {len(products)} products, {len(reviews)} reviews"
        )


if __name__ == "__main__":
    main()
