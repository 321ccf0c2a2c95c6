"""Running the official evaluators from a user's checkout, for ``golden/official``.

Nothing here computes a metric: it verifies a checkout's commit, imports the official modules
from it, runs the official scripts in a namespace it keeps, and puts local stand-ins where the
official code reaches for what cannot run here:

* ``evaluate.load("sacrebleu")`` downloads its metric script from the Hugging Face Hub; it is
  replaced by :class:`SacreBleuMetric`, which makes the call the wrapper makes:
  ``sacrebleu.corpus_bleu`` with the wrapper's defaults (exp smoothing, no smoothing value,
  ``force=False``, no effective order), the references transposed, and non-string
  predictions or references refused (the wrapper's string features refuse them too).
* Sentence-transformer models are loaded by hub name; :func:`sentence_models` gives what
  stands in for them.
* The Shopping MMLU task-wise and skill-inference scripts generate with a Hugging Face LLM;
  :class:`Replay` stands in for the tokenizer and the model and "generates" the given outputs
  in order, recording each prompt and ``max_new_tokens``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Source:
    """An official repository, pinned.

    Attributes:
        name: What it is, for messages.
        url: Where it is published.
        commit: The pinned commit (``git rev-parse HEAD`` of a checkout must equal it).
        env: The environment variable that names a checkout.
        option: The command-line option that names a checkout.
        files: Files the goldens need, relative to the checkout.
    """

    name: str
    url: str
    commit: str
    env: str
    option: str
    files: tuple[str, ...]


KIT = Source(
    name="Amazon KDD Cup 2024 starter kit",
    url="https://github.com/Keita18/amazon-kdd-cup-2024-starter-kit",
    commit="4835f57faef0e77e2a9a56f846873f53a1111502",
    env="SHOPBENCH_KIT_DIR",
    option="--kit",
    files=("parsers.py", "metrics.py", "local_evaluation.py"),
)
MMLU = Source(
    name="Shopping MMLU",
    url="https://github.com/KL4805/ShoppingMMLU",
    commit="7b118da15635e0d61c45fe1713420a344ac5b738",
    env="SHOPPING_MMLU_DIR",
    option="--mmlu",
    files=(
        "skill_wise_eval/metrics.py",
        "skill_wise_eval/skill_evaluation.py",
        "skill_wise_eval/hf_skill_inference.py",
        "skill_wise_eval/utils.py",
        "task_wise_eval/utils.py",
        "task_wise_eval/hf_multi_choice.py",
        "task_wise_eval/hf_retrieval.py",
        "task_wise_eval/hf_ranking.py",
        "task_wise_eval/hf_ner.py",
        "task_wise_eval/hf_generation.py",
    ),
)


class CheckoutError(RuntimeError):
    """A checkout that is missing, not a git checkout, at another commit or lacking a file."""


def verify_checkout(source: Source, directory: str | Path) -> Path:
    """The checkout directory, after checking it is ``source`` at its pinned commit.

    Args:
        source: The repository it must be.
        directory: The user's checkout.

    Returns:
        The resolved directory.

    Raises:
        CheckoutError: Naming the directory, the commit found and the one expected.
    """
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise CheckoutError(f"{source.name} checkout {path} ({source.env}) is not a directory")
    found = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise CheckoutError(
            f"{source.name} checkout {path} is not a git checkout "
            f"(git rev-parse HEAD: {found.stderr.strip()}); clone {source.url} and check out "
            f"{source.commit}"
        )
    head = found.stdout.strip()
    if head != source.commit:
        raise CheckoutError(
            f"{source.name} checkout {path} is at commit {head}, expected {source.commit}: "
            f"run `git -C {path} checkout {source.commit}`"
        )
    missing = [f for f in source.files if not (path / f).is_file()]
    if missing:
        raise CheckoutError(f"{source.name} checkout {path} lacks {', '.join(missing)}")
    return path


# --------------------------------------------------------------------------- modules


@contextlib.contextmanager
def official_modules(modules: dict[str, Path]) -> Iterator[dict[str, types.ModuleType]]:
    """Import official files under the module names their code imports them by (``metrics``,
    ``utils``, ...), in order, for the duration of the block; whatever those names meant
    before is put back afterwards (the kit's and Shopping MMLU's ``metrics`` differ)."""
    saved = {name: sys.modules.get(name) for name in modules}
    loaded: dict[str, types.ModuleType] = {}
    try:
        for name, path in modules.items():
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded[name] = module
        yield loaded
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.name = value`` for the duration of the block."""
    had = hasattr(obj, name)
    old = getattr(obj, name, None)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The official code's prints, progress bars, log lines and NumPy warnings silenced."""
    from loguru import logger

    logger.disable("")
    tqdm_disable = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    sink = io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.enable("")
        if tqdm_disable is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_disable


# --------------------------------------------------------------------------- sacrebleu


class SacreBleuMetric:
    """What ``evaluate.load("sacrebleu")`` returns, without the download: ``compute`` makes the
    ``sacrebleu.corpus_bleu`` call the wrapper makes."""

    def compute(
        self,
        *,
        predictions: list[Any],
        references: list[list[Any]],
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        force: bool = False,
        lowercase: bool = False,
        tokenize: str | None = None,
        use_effective_order: bool = False,
    ) -> dict[str, Any]:
        """BLEU of ``predictions`` against ``references`` (one list of references each).

        Raises:
            TypeError: A prediction or reference is not a string (the wrapper's features are
                strings).
            ValueError: Predictions have different numbers of references.
        """
        import sacrebleu

        for p in predictions:
            if not isinstance(p, str):
                raise TypeError(f"sacrebleu predictions must be strings, got {type(p).__name__}")
        for refs in references:
            for r in refs:
                if not isinstance(r, str):
                    raise TypeError(f"sacrebleu references must be strings, got {type(r).__name__}")
        per_prediction = len(references[0])
        if any(len(refs) != per_prediction for refs in references):
            raise ValueError("sacrebleu requires the same number of references for each prediction")
        streams = [[refs[i] for refs in references] for i in range(per_prediction)]
        result = sacrebleu.corpus_bleu(
            predictions,
            streams,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            force=force,
            lowercase=lowercase,
            use_effective_order=use_effective_order,
            **({} if tokenize is None else {"tokenize": tokenize}),
        )
        return {
            "score": result.score,
            "counts": result.counts,
            "totals": result.totals,
            "precisions": result.precisions,
            "bp": result.bp,
            "sys_len": result.sys_len,
            "ref_len": result.ref_len,
        }


def _load_metric(name: str, *_: Any, **__: Any) -> SacreBleuMetric:
    if name != "sacrebleu":
        raise NotImplementedError(f"only the sacrebleu metric is available offline, not {name!r}")
    return SacreBleuMetric()


@contextlib.contextmanager
def offline_evaluate() -> Iterator[None]:
    """``evaluate.load`` answers "sacrebleu" with :class:`SacreBleuMetric`; when the
    ``evaluate`` package is not installed, a module holding only that ``load`` stands in."""
    try:
        import evaluate
    except ImportError:
        stub = types.ModuleType("evaluate")
        stub.load = _load_metric  # type: ignore[attr-defined]
        with patched_module("evaluate", stub):
            yield
        return
    with patched(evaluate, "load", _load_metric):
        yield


@contextlib.contextmanager
def patched_module(name: str, module: types.ModuleType) -> Iterator[None]:
    """``sys.modules[name] = module`` for the duration of the block."""
    old = sys.modules.get(name)
    sys.modules[name] = module
    try:
        yield
    finally:
        if old is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = old


# --------------------------------------------------------------------------- sentence models


def sentence_models() -> tuple[dict[str, Any], dict[str, Any]]:
    """The starter kit's sentence-transformer models, loaded from local copies.

    Returns:
        (model name -> loaded ``SentenceTransformer``, model name -> what was used: the
        local copy's weights digest, or why the model is not available).
    """
    import hashlib

    from sentence_transformers import SentenceTransformer

    from harness.shopbench import metrics
    from harness.shopbench.errors import SentenceModelNotFoundError

    models: dict[str, Any] = {}
    used: dict[str, Any] = {}
    for name in metrics.SENTENCE_MODEL_FOR_METRIC.values():
        try:
            path = metrics.resolve_sentence_model(name)
        except SentenceModelNotFoundError as e:
            used[name] = {"available": False, "why": str(e).splitlines()[0]}
            continue
        models[name] = SentenceTransformer(str(path), device="cpu")
        weights = sorted(path.rglob("*.safetensors"))
        used[name] = {
            "available": True,
            "loaded_from": "a local copy (found by harness.shopbench.metrics."
            "resolve_sentence_model) instead of the hub download by name",
            "weights_sha256": {
                p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in weights
            },
        }
    return models, used


# --------------------------------------------------------------------------- LLM replay


class _Ids:
    """A token-id tensor stand-in: ``.cuda()`` keeps it where it is."""

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt

    def cuda(self) -> _Ids:
        return self


class _Inputs:
    def __init__(self, prompt: str) -> None:
        self.input_ids = _Ids(prompt)


class Replay:
    """Tokenizer and model for a generating script: each ``generate`` call returns the next
    of ``outputs``, decoded as ``prompt + output`` (the scripts cut the prompt off).

    Args:
        outputs: One output per generate call, in order.
        on_generate: Called with the call's index before it returns (the caller reads the
            script's state there: the previous row is complete).

    Attributes:
        prompts: Each generate call's prompt.
        max_new_tokens: Each generate call's ``max_new_tokens``.
    """

    def __init__(self, outputs: list[str], on_generate: Callable[[int], None] | None = None):
        self.outputs = outputs
        self.on_generate = on_generate
        self.prompts: list[str] = []
        self.max_new_tokens: list[Any] = []
        self.pad_token: Any = None
        self.eos_token = "</s>"
        self.padding_side = "right"

    def load(self, *_: Any, **__: Any) -> tuple[Replay, Replay]:
        """Stands in for ``load_tokenizer_and_model``: (tokenizer, model)."""
        return self, self

    def __call__(self, prompt: str, **_: Any) -> _Inputs:
        return _Inputs(prompt)

    def generate(self, input_ids: _Ids, **kwargs: Any) -> list[int]:
        k = len(self.prompts)
        if self.on_generate is not None:
            self.on_generate(k)
        self.prompts.append(input_ids.prompt)
        self.max_new_tokens.append(kwargs.get("max_new_tokens"))
        return [k]

    def batch_decode(self, ids: list[int], **_: Any) -> list[str]:
        k = ids[0]
        return [self.prompts[k] + self.outputs[k]]


# --------------------------------------------------------------------------- scripts


def run_script(
    path: Path, argv: list[str], cwd: Path, namespace: dict[str, Any] | None = None
) -> tuple[dict[str, Any], BaseException | None]:
    """Execute an official script as ``__main__`` in ``cwd`` with ``argv``, keeping its
    namespace even when it raises.

    Args:
        path: The script.
        argv: Its arguments.
        cwd: The directory it runs in (the scripts read ``../data``).
        namespace: The namespace to run in (created when None).

    Returns:
        (the script's namespace, the exception it raised or None).
    """
    ns = namespace if namespace is not None else {}
    ns.update({"__name__": "__main__", "__file__": str(path)})
    code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    old_argv, old_cwd = sys.argv, Path.cwd()
    sys.argv = [str(path), *argv]
    os.chdir(cwd)
    try:
        exec(code, ns)
    except Exception as e:
        return ns, e
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return ns, None


def error_text(e: BaseException) -> str:
    """``Type: message`` of an exception, for the goldens."""
    return f"{type(e).__name__}: {e}"


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: NumPy scalars to int/float, tuples to lists."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, tuple | list | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value
