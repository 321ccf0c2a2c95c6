"""A stand-in language model for the fake server: it answers synthesis prompts with valid
examples built by the template generator for the records in the prompt, deterministically
per request body, and answers some first attempts (``seed`` 0) with unusable text."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from harness.data.catalogue import Catalogue
from harness.data.sources import Sources
from harness.data.template import TEMPLATE_TASKS, Deck, World
from tests.support.openai_server import body_hash


class TemplateResponder:
    """Callable ``body -> reply text`` for :class:`~tests.support.openai_server.FakeOpenAIServer`."""

    def __init__(self, sources: Sources, catalogue: Catalogue, malformed_every: int = 4) -> None:
        self.world = World(sources)
        self.reviews = {r.key: r for r in sources.reviews}
        self.heads = {t.prompt.splitlines()[0]: t.name for t in catalogue.tasks.values()}
        self.malformed_every = malformed_every

    def _anchor(self, task: str, rid: str) -> Any:
        kind = TEMPLATE_TASKS[task].anchor
        if kind == "products":
            return self.world.sources.product(rid)
        if kind == "reviews":
            return self.reviews.get(rid)
        return self.world.categories.get(rid)

    def __call__(self, body: dict[str, Any]) -> str:
        user = body["messages"][-1]["content"]
        task = self.heads[user.splitlines()[0]]
        h = body_hash(body)
        if body.get("seed") == 0 and int(h[:8], 16) % self.malformed_every == 0:
            return "Sorry, I can only answer questions about shopping."
        n = int(re.search(r"write (\d+) new examples", user).group(1))  # type: ignore[union-attr]
        records = [
            json.loads(line)
            for line in user.splitlines()
            if line.startswith('{"') and '"input_field"' not in line
        ]
        rng = random.Random(h)
        deck = Deck(rng, 4)
        items = []
        for rec in records:
            anchor = self._anchor(task, rec["id"])
            for k in range(n):
                built = TEMPLATE_TASKS[task].build(self.world, anchor, k, rng, deck)
                if built is not None:
                    items.append(
                        {"id": rec["id"], "input_field": built.prompt, "output_field": built.answer}
                    )
        return "```json\n" + json.dumps(items, ensure_ascii=False) + "\n```"
