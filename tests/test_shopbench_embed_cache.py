"""The on-disk embedding cache: the same scores with and without it, only new texts embedded
on a re-score and no model loaded when every text is cached; keys that follow the model's
files; no partial or damaged record ever read as a vector; and ``harness score`` importing
only what a file's metrics need."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.shopbench import embed_cache, metrics
from harness.shopbench.data import load_shopbench
from harness.shopbench.embed_cache import EmbeddingCache, model_key
from harness.shopbench.errors import SentenceModelNotFoundError
from harness.shopbench.evaluate import evaluate
from tests.support.paths import REPO

MODEL = "all-MiniLM-L6-v2"
PREDS = ["a red cotton shirt", "", "ein Hemd", "toggle switch", "a red cotton shirt", "A strap."]
TRUTHS: list[Any] = [
    "a red cotton shirt",
    "a shirt",
    ["shirt", "blue jeans"],
    "lever switch",
    "zzz",
    ["A watch band straps a watch.", "A strap."],
]
HEAVY = ("torch", "sentence_transformers", "transformers", "rouge_score", "nltk", "sacrebleu")


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    try:
        return metrics.resolve_sentence_model(MODEL)
    except SentenceModelNotFoundError as e:
        pytest.skip(str(e))


def _distinct(preds: list[str], truths: list[Any]) -> list[str]:
    refs = [[t] if isinstance(t, str) else t for t in truths]
    return list(dict.fromkeys([*preds, *(r for rs in refs for r in rs)]))


def _no_model(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the model must not be loaded when every text is cached")


# --------------------------------------------------------------------------- configuration


def test_location_default_and_off_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HARNESS_EMBEDDING_CACHE", raising=False)
    default = tmp_path / ".cache" / "shopbench-harness" / "embeddings"
    assert embed_cache.configured_root() == default
    for off in ("off", "OFF", "0", "none"):
        monkeypatch.setenv("HARNESS_EMBEDDING_CACHE", off)
        assert embed_cache.configured_root() is None and embed_cache.default_cache() is None
    monkeypatch.setenv("HARNESS_EMBEDDING_CACHE", str(tmp_path / "emb"))
    cache = embed_cache.default_cache()
    assert cache is not None and cache.path == (tmp_path / "emb" / "embeddings.sqlite3").resolve()
    assert embed_cache.default_cache() is cache  # one per directory and process


# --------------------------------------------------------------------------- scores


def test_cold_and_warm_scores_equal_uncached_exactly(
    minilm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = metrics.score_task("sent-transformer", PREDS, TRUTHS, embedding_cache=False)
    cold_cache = EmbeddingCache(tmp_path)
    cold = metrics.score_task("sent-transformer", PREDS, TRUTHS, embedding_cache=cold_cache)
    # An empty cache encodes the same texts in the same call: the same floats.
    assert cold.rows == plain.rows and cold.score == plain.score
    n = len(_distinct(PREDS, TRUTHS))
    assert cold_cache.stats == {"hits": 0, "misses": n, "invalid": 0, "stored": n}

    # A later process: every vector is read back as stored, and no model is loaded.
    monkeypatch.setattr(metrics, "load_sentence_model", _no_model)
    warm_cache = EmbeddingCache(tmp_path)
    warm = metrics.score_task("sent-transformer", PREDS, TRUTHS, embedding_cache=warm_cache)
    assert warm.rows == plain.rows and warm.score == plain.score
    assert warm_cache.stats == {"hits": n, "misses": 0, "invalid": 0, "stored": 0}


def test_a_rescore_embeds_only_new_texts(minilm_dir: Path, tmp_path: Path) -> None:
    metrics.score_task("sent-transformer", PREDS, TRUTHS, embedding_cache=EmbeddingCache(tmp_path))
    real = metrics.load_sentence_model(MODEL)
    encoded: list[list[str]] = []

    class Recording:
        def encode(self, texts: list[str], **kwargs: Any) -> Any:
            encoded.append(list(texts))
            return real.encode(texts, **kwargs)

    other = ["a red shirt", "", "ein rotes Hemd", "toggle switch", "a red cotton shirt", "strap"]
    mp = pytest.MonkeyPatch()
    mp.setattr(metrics, "load_sentence_model", lambda *a, **k: Recording())
    try:
        again = metrics.score_task(
            "sent-transformer", other, TRUTHS, embedding_cache=EmbeddingCache(tmp_path)
        )
    finally:
        mp.undo()
    assert encoded == [["a red shirt", "ein rotes Hemd", "strap"]]
    plain = metrics.score_task("sent-transformer", other, TRUTHS, embedding_cache=False)
    # Vectors encoded in other batches differ in the last float32 bits only.
    assert max(abs(a - b) for a, b in zip(again.rows, plain.rows, strict=True)) <= 1e-6


def test_evaluate_in_both_modes_shares_the_configured_cache(
    minilm_dir: Path, dev_fixture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = load_shopbench(dev_fixture)
    similarity_rows = sum(r.metric == "sent-transformer" for r in dev)
    assert similarity_rows >= 2
    preds = [
        f"Output: {r.output_field} indeed" if r.metric == "sent-transformer" else "1" for r in dev
    ]
    monkeypatch.setenv("HARNESS_EMBEDDING_CACHE", str(tmp_path / "emb"))
    plain = {m: evaluate(dev, preds, m, embedding_cache=False) for m in ("official", "robust")}
    official = evaluate(dev, preds, "official")
    cache = embed_cache.default_cache()
    assert cache is not None and cache.path.is_file()
    stored = cache.stats["stored"]
    robust = evaluate(dev, preds, "robust")
    # The robust parser drops "Output: ": only those predictions are new, the truths are not.
    assert cache.stats["stored"] - stored == similarity_rows
    for mode, result in (("official", official), ("robust", robust)):
        for a, b in zip(result.rows, plain[mode].rows, strict=True):
            assert abs(a.score - b.score) <= 1e-6, mode
    monkeypatch.setenv("HARNESS_EMBEDDING_CACHE", "off")
    evaluate(dev, preds, "official")
    assert cache.stats["stored"] - stored == similarity_rows  # off: nothing read or written


def test_a_damaged_database_is_bypassed_with_a_warning(minilm_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "embeddings.sqlite3").write_bytes(b"not a database" * 100)
    plain = metrics.score_task("sent-transformer", PREDS, TRUTHS, embedding_cache=False)
    with pytest.warns(RuntimeWarning, match="embedding cache .* is off for this process"):
        got = metrics.score_task(
            "sent-transformer", PREDS, TRUTHS, embedding_cache=EmbeddingCache(tmp_path)
        )
    assert got.rows == plain.rows


# --------------------------------------------------------------------------- model keys


def _fake_model(path: Path) -> Path:
    (path / "1_Pooling").mkdir(parents=True)
    (path / "config.json").write_text('{"hidden_size": 8}')
    (path / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (path / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (path / "vocab.txt").write_text("a\nb\n")
    (path / "README.md").write_text("about the model")
    return path


def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_model_key_follows_weights_config_and_tokenizer(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "m")
    key = model_key("mini", model)
    assert key.startswith("mini@sha256:") and key == model_key("sentence-transformers/mini", model)
    assert model_key("other", model) != key
    (model / "README.md").write_text("edited documentation")
    assert model_key("mini", model) == key
    _touch(model / "vocab.txt")  # a new time, the same content: the same model
    assert model_key("mini", model) == key
    keys = {key}
    for name, change in (
        ("model.safetensors", lambda b: b[:-1] + bytes([b[-1] ^ 1])),
        ("config.json", lambda b: b.replace(b"8", b"16")),
        ("1_Pooling/config.json", lambda b: b.replace(b"true", b"false")),
        ("vocab.txt", lambda b: b + b"c\n"),
    ):
        f = model / name
        f.write_bytes(change(f.read_bytes()))
        _touch(f)
        keys.add(model_key("mini", model))
    assert len(keys) == 5


# --------------------------------------------------------------------------- storage


def _vectors(n: int, seed: int = 0, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"text {seed}-{i} ✓": rng.standard_normal(16).astype(dtype) for i in range(n)}


def test_vectors_round_trip_exactly_per_model(tmp_path: Path) -> None:
    a, b = _vectors(5), _vectors(3, seed=1, dtype=np.float64)
    EmbeddingCache(tmp_path).store("m1", a)
    EmbeddingCache(tmp_path).store("m2", b)
    cache = EmbeddingCache(tmp_path)
    got = cache.lookup("m1", [*a, "never stored"])
    assert set(got) == set(a)
    for t, v in a.items():
        assert got[t].dtype == v.dtype and got[t].tobytes() == v.tobytes()
    assert cache.lookup("m2", list(a)) == {}
    assert all(cache.lookup("m2", list(b))[t].tobytes() == v.tobytes() for t, v in b.items())


def test_damaged_records_are_never_read_and_get_rewritten(tmp_path: Path) -> None:
    vecs = _vectors(4)
    EmbeddingCache(tmp_path).store("m", vecs)
    texts = list(vecs)
    keys = [embed_cache.text_key(t) for t in texts]
    with sqlite3.connect(tmp_path / "embeddings.sqlite3") as db:
        db.execute(  # truncated bytes
            "UPDATE vectors SET vector = substr(vector, 1, 40) WHERE text_sha256 = ?", (keys[0],)
        )
        flipped = bytearray(vecs[texts[1]].tobytes())
        flipped[5] ^= 0x10
        db.execute(  # one bit flipped, same length
            "UPDATE vectors SET vector = ? WHERE text_sha256 = ?", (bytes(flipped), keys[1])
        )
        db.execute("UPDATE vectors SET dim = 8 WHERE text_sha256 = ?", (keys[2],))
    cache = EmbeddingCache(tmp_path)
    got = cache.lookup("m", texts)
    assert set(got) == {texts[3]} and cache.stats["invalid"] == 3
    cache.store("m", {t: vecs[t] for t in texts[:3]})
    again = EmbeddingCache(tmp_path).lookup("m", texts)
    assert all(again[t].tobytes() == vecs[t].tobytes() for t in texts)


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import numpy as np
from harness.shopbench.embed_cache import EmbeddingCache

cache = EmbeddingCache(Path(sys.argv[1]))
conn = cache._connect()
seen = []

def trace(statement):
    seen.append(statement)
    if sum("INSERT" in s for s in seen) > 50:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction, half the rows inserted

conn.set_trace_callback(trace)
rng = np.random.default_rng(7)
cache.store("m", {f"batch B {i}": rng.standard_normal(16).astype(np.float32) for i in range(100)})
"""


def test_a_writer_killed_mid_batch_leaves_none_of_it(tmp_path: Path) -> None:
    first = _vectors(20)
    EmbeddingCache(tmp_path).store("m", first)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], cwd=REPO, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    cache = EmbeddingCache(tmp_path)
    assert cache.lookup("m", [f"batch B {i}" for i in range(100)]) == {}
    got = cache.lookup("m", list(first))
    assert all(got[t].tobytes() == v.tobytes() for t, v in first.items())
    later = _vectors(5, seed=3)
    cache.store("m", later)
    assert set(EmbeddingCache(tmp_path).lookup("m", list(later))) == set(later)


def test_a_truncated_database_returns_no_wrong_vector(tmp_path: Path) -> None:
    vecs = _vectors(400)
    cache = EmbeddingCache(tmp_path)
    cache.store("m", vecs)
    cache.close()  # the last connection checkpoints the log into the database file
    db = tmp_path / "embeddings.sqlite3"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        damaged = EmbeddingCache(tmp_path)
        got = damaged.lookup("m", list(vecs))
        damaged.store("m", _vectors(3, seed=9))  # never raises
    assert len(got) < len(vecs)
    assert all(got[t].tobytes() == vecs[t].tobytes() for t in got)


# --------------------------------------------------------------------------- imports


def _score_modules(
    data: Path, preds: Path, out: Path, env: dict[str, str], *extra: str
) -> set[str]:
    """Modules a ``harness score`` process imports (``python -X importtime``)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "harness.cli", "score", "--data", str(data)]
    cmd += ["--predictions", str(preds), "--out", str(out), *extra]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _write(tmp_path: Path, rows: list[dict[str, Any]], preds: list[str]) -> tuple[Path, Path]:
    data, pred = tmp_path / "data.jsonl", tmp_path / "pred.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    pred.write_text("".join(json.dumps({"prediction": p}) + "\n" for p in preds), "utf-8")
    return data, pred


def _dev_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]


@pytest.mark.parametrize(
    ("metrics_kept", "wanted"),
    [(("accuracy",), ()), (("accuracy", "rougel"), ("rouge_score", "nltk"))],
)
def test_score_imports_only_what_the_metrics_need(
    dev_fixture: Path, tmp_path: Path, metrics_kept: tuple[str, ...], wanted: tuple[str, ...]
) -> None:
    rows = [r for r in _dev_rows(dev_fixture) if r["metric"] in metrics_kept]
    data, pred = _write(tmp_path, rows, ["1"] * len(rows))
    env = {**os.environ, "HARNESS_EMBEDDING_CACHE": str(tmp_path / "emb")}
    modules = _score_modules(data, pred, tmp_path / "s.json", env)
    assert {m for m in HEAVY if m in modules} == set(wanted)
    assert "harness.shopbench.embed_cache" not in modules
    assert not (tmp_path / "emb").exists()


def test_a_warm_rescore_loads_no_model(minilm_dir: Path, dev_fixture: Path, tmp_path: Path) -> None:
    rows = [r for r in _dev_rows(dev_fixture) if r["metric"] in ("sent-transformer", "accuracy")]
    preds = [r["output_field"][:30] if r["metric"] == "sent-transformer" else "2" for r in rows]
    data, pred = _write(tmp_path, rows, preds)
    env = {**os.environ, "HARNESS_EMBEDDING_CACHE": str(tmp_path / "emb")}
    cold = _score_modules(data, pred, tmp_path / "cold.json", env)
    assert {"torch", "sentence_transformers"} <= cold
    warm = _score_modules(data, pred, tmp_path / "warm.json", env)
    assert not {m for m in HEAVY if m in warm}
    off = _score_modules(data, pred, tmp_path / "off.json", env, "--no-embedding-cache")
    assert {"torch", "sentence_transformers"} <= off
    cold_scores = json.loads((tmp_path / "cold.json").read_text("utf-8"))
    assert json.loads((tmp_path / "warm.json").read_text("utf-8")) == cold_scores
    assert json.loads((tmp_path / "off.json").read_text("utf-8")) == cold_scores
