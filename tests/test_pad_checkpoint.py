"""Streaming intermediate_size padding: exactness on real tiny models, layout, bad input,
interrupted runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopbench_kernels.errors import CheckpointError, PaddingError, UnsupportedModelError
from shopbench_kernels.pad_checkpoint import (
    INDEX_NAME,
    pad_checkpoint,
    placement_map,
    read_header,
    stale_partials,
)
from tests.support.paths import REPO

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from tests.support.tiny_models import (  # noqa: E402
    LOGIT_TOL,
    build_qwen2,
    logits,
    tiny_model,
    token_ids,
)


def build_llama_with_mlp_bias(path: Path, seed: int = 0) -> Any:
    """A tiny Llama whose MLP has biases (``mlp_bias=True``)."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        mlp_bias=True,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # biases start at zero; make them matter
        for layer in model.model.layers:
            for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                proj.bias.normal_(0, 0.5)
    model.save_pretrained(path, safe_serialization=True)
    return model


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _siblings(dst: Path) -> list[str]:
    return sorted(p.name for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}"))


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("placement", ["interleave", "append"])
def test_single_file_logits_identical(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, placement: str
) -> None:
    src, dst = tiny_model("pad-qwen2", tmp_path_factory.getbasetemp()), tmp_path / "dst"
    res = pad_checkpoint(src, dst, tp_sizes=[4], group_size=16, placement=placement)
    assert res["intermediate_size"] == {"before": 96, "after": 128}
    assert json.loads((dst / "config.json").read_text())["intermediate_size"] == 128
    ids = token_ids(128)
    diff = (logits(src, ids) - logits(dst, ids)).abs().max().item()
    assert diff <= LOGIT_TOL


def test_sharded_logits_identical_and_index_rewritten(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    model = build_qwen2(src, hidden=64, inter=80, layers=3, max_shard_size="30KB")
    shards = sorted(p.name for p in src.glob("*.safetensors"))
    assert len(shards) > 3 and (src / INDEX_NAME).is_file()
    res = pad_checkpoint(src, dst, 160, chunk_bytes=777)  # tiny chunks: exercise chunking
    assert res["shards"] == shards
    assert sorted(p.name for p in dst.glob("*.safetensors")) == shards
    index_in = json.loads((src / INDEX_NAME).read_text())
    index_out = json.loads((dst / INDEX_NAME).read_text())
    assert index_out["weight_map"] == index_in["weight_map"]
    total = sum(t.nbytes for s in shards for t in read_header(dst / s).tensors)
    assert index_out["metadata"]["total_size"] == total
    ids = token_ids(128, 1)
    assert (logits(model, ids) - logits(dst, ids)).abs().max().item() <= LOGIT_TOL


@pytest.mark.parametrize("chunk", [50, 640, 4096])
def test_output_bytes_do_not_depend_on_the_buffer_size(tmp_path: Path, chunk: int) -> None:
    """Buffers smaller than a row, about one row, and many rows, with one or several shard
    workers, give identical files."""
    src = tmp_path / "src"
    build_qwen2(src, hidden=32, inter=40, layers=2, max_shard_size="12KB")
    cases = (("interleave", 64), ("interleave", 57), ("interleave", 50), ("append", 64))
    for placement, target in cases:  # 40 -> 50: zeros exactly every 5th slot (block copy)
        ref = pad_checkpoint(
            src, tmp_path / f"ref-{placement}-{target}", target, placement=placement, durable=False
        )
        got = pad_checkpoint(
            src,
            tmp_path / f"got-{placement}-{target}-{chunk}",
            target,
            placement=placement,
            chunk_bytes=chunk,
            durable=False,
            workers=1 if chunk == 50 else 3,
        )
        assert got["files"] == ref["files"]
        shutil.rmtree(tmp_path / f"ref-{placement}-{target}")


@pytest.mark.parametrize("threshold", [1, 1 << 62])
def test_holes_and_written_zeros_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    """Zero runs become holes above a size threshold and are written below it; every run a
    hole, or none, gives identical files (and hashes)."""
    import shopbench_kernels.pad_writer as pw

    src = tmp_path / "src"
    model = build_qwen2(src, hidden=256, inter=320, vocab=512, max_shard_size="600KB")
    for placement in ("interleave", "append"):
        ref = pad_checkpoint(src, tmp_path / f"ref-{placement}", 384, placement=placement)
        with monkeypatch.context() as m:
            m.setattr(pw, "_HOLE_MIN", threshold)
            got = pad_checkpoint(src, tmp_path / f"got-{placement}", 384, placement=placement)
        assert got["files"] == ref["files"]
    ids = token_ids(512, 9)
    assert (
        logits(model, ids) - logits(tmp_path / "got-append", ids)
    ).abs().max().item() <= LOGIT_TOL


def test_shard_ending_in_padded_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard whose last bytes are zero rows (left as a hole) still has its full size."""
    import shopbench_kernels.pad_writer as pw

    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2ForCausalLM"],
                "hidden_size": 1024,
                "intermediate_size": 6,
                "num_hidden_layers": 1,
                "num_attention_heads": 8,
            }
        )
    )
    g = torch.Generator().manual_seed(0)
    save_file(
        {
            "model.layers.0.mlp.down_proj.weight": torch.randn(1024, 6, generator=g),
            "model.layers.0.mlp.gate_proj.weight": torch.randn(6, 1024, generator=g),
            "model.layers.0.mlp.up_proj.weight": torch.randn(6, 1024, generator=g),
        },
        src / "model.safetensors",
    )
    assert read_header(src / "model.safetensors").tensors[-1].name.endswith("up_proj.weight")
    monkeypatch.setattr(pw, "_HOLE_MIN", 1)
    res = pad_checkpoint(src, tmp_path / "dst", 8, placement="append")
    out = load_file(tmp_path / "dst" / "model.safetensors")
    assert out["model.layers.0.mlp.up_proj.weight"].shape == (8, 1024)
    assert not out["model.layers.0.mlp.up_proj.weight"][6:].any()
    assert res["files"]["model.safetensors"] == _sha(tmp_path / "dst" / "model.safetensors")


def test_llama_mlp_bias_padded_and_exact(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    model = build_llama_with_mlp_bias(src)
    pad_checkpoint(src, dst, 64)
    out = load_file(dst / "model.safetensors")
    assert out["model.layers.0.mlp.gate_proj.bias"].shape == (64,)
    assert out["model.layers.0.mlp.up_proj.bias"].shape == (64,)
    assert out["model.layers.0.mlp.down_proj.bias"].shape == (32,)
    ids = token_ids(96, 2)
    assert (logits(model, ids) - logits(dst, ids)).abs().max().item() <= LOGIT_TOL


@st.composite
def tiny_cases(draw: st.DrawFn) -> dict[str, Any]:
    kv = draw(st.sampled_from([1, 2]))
    heads = kv * draw(st.sampled_from([1, 2]))
    head_dim = draw(st.sampled_from([8, 16]))
    inter = draw(st.integers(4, 72))
    return {
        "hidden": heads * head_dim,
        "inter": inter,
        "heads": heads,
        "kv": kv,
        "layers": draw(st.integers(1, 2)),
        "target": inter + draw(st.integers(0, 3 * inter)),
        "placement": draw(st.sampled_from(["interleave", "append"])),
        "sharded": draw(st.booleans()),
        "seed": draw(st.integers(0, 1000)),
    }


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=tiny_cases())
def test_random_tiny_models_and_targets_are_exact(
    tmp_path_factory: pytest.TempPathFactory, case: dict[str, Any]
) -> None:
    root = tmp_path_factory.mktemp("hyp")
    src, dst = root / "src", root / "dst"
    model = build_qwen2(
        src,
        hidden=case["hidden"],
        inter=case["inter"],
        heads=case["heads"],
        kv=case["kv"],
        layers=case["layers"],
        seed=case["seed"],
        max_shard_size="8KB" if case["sharded"] else None,
    )
    pad_checkpoint(src, dst, case["target"], placement=case["placement"], durable=False)
    ids = token_ids(128, case["seed"])
    assert (logits(model, ids) - logits(dst, ids)).abs().max().item() <= LOGIT_TOL
    shutil.rmtree(root)


# --------------------------------------------------------------------------- layout


def test_bf16_bytes_placement_and_copies(tmp_path: Path) -> None:
    """Original channels land where placement_map says, byte for byte; padded slots are
    zero bits; every other tensor and every side file is copied unchanged."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    build_qwen2(src, hidden=32, inter=40, dtype="bfloat16")
    (src / "pytorch_model.bin").write_bytes(b"not copied")
    res = pad_checkpoint(src, dst, 64, placement="interleave")
    a, b = load_file(src / "model.safetensors"), load_file(dst / "model.safetensors")
    assert a.keys() == b.keys()
    mapping = placement_map(40, 64, "interleave")
    keep = torch.from_numpy(np.flatnonzero(mapping >= 0))
    zero = torch.from_numpy(np.flatnonzero(mapping < 0))
    for name, t in a.items():
        assert b[name].dtype == torch.bfloat16
        u, v = t.view(torch.int16), b[name].view(torch.int16)
        if name.endswith(("gate_proj.weight", "up_proj.weight")):
            assert torch.equal(v[keep], u) and not v[zero].any()
        elif name.endswith("down_proj.weight"):
            assert torch.equal(v[:, keep], u) and not v[:, zero].any()
        else:
            assert torch.equal(u, v), name
    for rel in (
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
        "special_tokens_map.json",
        "extra/notes.txt",
    ):
        assert (dst / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert not (dst / "pytorch_model.bin").exists()
    assert res["skipped"] == ["pytorch_model.bin"]
    cfg_in = json.loads((src / "config.json").read_text())
    cfg_out = json.loads((dst / "config.json").read_text())
    assert cfg_out == {**cfg_in, "intermediate_size": 64}
    on_disk = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert sorted(res["files"]) == on_disk
    assert all(res["files"][rel] == _sha(dst / rel) for rel in on_disk)
    assert _siblings(dst) == []


@settings(max_examples=300, deadline=None)
@given(
    old=st.integers(1, 3000),
    extra=st.integers(0, 3000),
    group=st.sampled_from([8, 16, 32, 64, 128]),
)
def test_interleave_rule_and_no_all_zero_group(old: int, extra: int, group: int) -> None:
    new = old + extra
    m = placement_map(old, new, "interleave")
    pad = new - old
    j = np.arange(new)
    assert np.array_equal(m < 0, ((j + 1) * pad) // new > (j * pad) // new)  # the rule
    assert np.array_equal(m[m >= 0], np.arange(old))  # originals keep their order
    a = placement_map(old, new, "append")
    assert np.array_equal(a[:old], np.arange(old)) and (a[old:] < 0).all()
    if new % group == 0 and old * group >= new:
        groups = m.reshape(-1, group)
        assert (groups >= 0).any(axis=1).all()  # every group has a real channel


def test_interleave_spacing_for_qwen2_72b() -> None:
    m = placement_map(29568, 29696, "interleave")
    zeros = np.flatnonzero(m < 0)
    assert len(zeros) == 128 and (np.diff(zeros) == 232).all() and zeros[-1] == 29695
    assert ((m.reshape(-1, 128) < 0).sum(axis=1) <= 1).all()
    # Appending instead leaves the last 128-group all zeros.
    assert (placement_map(29568, 29696, "append")[-128:] < 0).all()


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def tiny_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    build_qwen2(src, hidden=64, inter=96, max_shard_size="30KB")
    return src


def _assert_no_output(dst: Path) -> None:
    assert not dst.exists()
    assert _siblings(dst) == []


def test_target_smaller_than_current(tiny_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    with pytest.raises(PaddingError, match="smaller than the current 96"):
        pad_checkpoint(tiny_src, dst, 64)
    _assert_no_output(dst)


def test_target_that_fails_the_requested_tp_sizes(tiny_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    with pytest.raises(PaddingError, match=r"does not serve[\s\S]*tp 4: AWQ down_proj") as e:
        pad_checkpoint(tiny_src, dst, 112, tp_sizes=[2, 4], group_size=16)
    assert "pad intermediate_size to 128" in str(e.value)
    _assert_no_output(dst)
    with pytest.raises(PaddingError, match="give a target"):
        pad_checkpoint(tiny_src, dst)
    _assert_no_output(dst)


def _rewrite_shard(path: Path, edit: Any) -> None:
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_missing_tensor(tiny_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    index = json.loads((tiny_src / INDEX_NAME).read_text())
    name = "model.layers.1.mlp.up_proj.weight"
    _rewrite_shard(tiny_src / index["weight_map"][name], lambda t: t.pop(name))
    with pytest.raises(
        CheckpointError, match=r"listed in the index are not in their shard.*up_proj"
    ):
        pad_checkpoint(tiny_src, dst, 128)
    _assert_no_output(dst)
    del index["weight_map"][name]
    (tiny_src / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"MLP weight\(s\) missing.*layers\.1\.mlp\.up_proj"):
        pad_checkpoint(tiny_src, dst, 128)
    _assert_no_output(dst)


def test_mis_shaped_tensor(tiny_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    index = json.loads((tiny_src / INDEX_NAME).read_text())
    name = "model.layers.0.mlp.down_proj.weight"

    def edit(t: dict[str, Any]) -> None:
        t[name] = t[name][:, :80].contiguous()

    _rewrite_shard(tiny_src / index["weight_map"][name], edit)
    with pytest.raises(
        CheckpointError, match=r"down_proj.weight` has shape \[64, 80\], expected \[64, 96\]"
    ):
        pad_checkpoint(tiny_src, dst, 128)
    _assert_no_output(dst)


def test_truncated_shard(tiny_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    shard = sorted(tiny_src.glob("*.safetensors"))[-1]
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match=rf"{shard.name}: truncated"):
        pad_checkpoint(tiny_src, dst, 128)
    _assert_no_output(dst)
    shard.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        pad_checkpoint(tiny_src, dst, 128)
    _assert_no_output(dst)


def test_refuses_other_architectures_by_name(tiny_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    cfg_path = tiny_src / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "architectures": ["MixtralForCausalLM"]}))
    with pytest.raises(UnsupportedModelError, match="MixtralForCausalLM is not a supported"):
        pad_checkpoint(tiny_src, dst, 128)
    cfg_path.write_text(
        json.dumps({**cfg, "quantization_config": {"quant_method": "awq", "bits": 4}})
    )
    with pytest.raises(UnsupportedModelError, match="already quantised \\(awq\\)"):
        pad_checkpoint(tiny_src, dst, 128)
    _assert_no_output(dst)


def test_refuses_a_non_gate_up_down_mlp(tmp_path: Path) -> None:
    """Right architecture name, but a fused/MoE MLP: refused, listing what was found."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    build_qwen2(src, hidden=32, inter=40, layers=1)

    def fuse(t: dict[str, Any]) -> None:
        gate = t.pop("model.layers.0.mlp.gate_proj.weight")
        up = t.pop("model.layers.0.mlp.up_proj.weight")
        t["model.layers.0.mlp.gate_up_proj.weight"] = torch.cat([gate, up]).contiguous()

    _rewrite_shard(src / "model.safetensors", fuse)
    with pytest.raises(UnsupportedModelError, match=r"other MLP tensor\(s\).*gate_up_proj"):
        pad_checkpoint(src, dst, 64)
    _assert_no_output(dst)


def test_refuses_integer_mlp_weights_and_existing_output(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    build_qwen2(src, hidden=32, inter=40, layers=1)
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already exists"):
        pad_checkpoint(src, dst, 64)
    assert (dst / "keep.txt").read_text() == "mine"

    def to_int(t: dict[str, Any]) -> None:
        name = "model.layers.0.mlp.down_proj.weight"
        t[name] = t[name].to(torch.int8)

    _rewrite_shard(src / "model.safetensors", to_int)
    with pytest.raises(UnsupportedModelError, match="dtype I8"):
        pad_checkpoint(src, tmp_path / "other", 64)
    _assert_no_output(tmp_path / "other")


def test_refuses_source_without_safetensors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2ForCausalLM"],
                "hidden_size": 8,
                "intermediate_size": 8,
                "num_hidden_layers": 1,
                "num_attention_heads": 1,
            }
        )
    )
    (src / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(CheckpointError, match="only safetensors are read"):
        pad_checkpoint(src, tmp_path / "dst", 16)
    (src / "config.json").write_text("{\n  oops")
    with pytest.raises(CheckpointError, match=r"config.json: invalid JSON at line 2"):
        pad_checkpoint(src, tmp_path / "dst", 16)


# --------------------------------------------------------------------------- interruption

CHILD = """
import signal, resource, sys
from shopbench_kernels.pad_checkpoint import pad_checkpoint
limit, ignore = int(sys.argv[3]), sys.argv[4] == "1"
# CPython ignores SIGXFSZ at start-up; restore the default (terminate) unless asked not to.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN if ignore else signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
pad_checkpoint(sys.argv[1], sys.argv[2], 256, chunk_bytes=4096)
"""


def _two_shards(src: Path) -> Any:
    """A checkpoint with a small first shard and a large second one."""
    model = build_qwen2(src, hidden=64, inter=96, layers=2)
    tensors = load_file(src / "model.safetensors")
    (src / "model.safetensors").unlink()
    small = {k: v for k, v in tensors.items() if "norm" in k}
    large = {k: v for k, v in tensors.items() if k not in small}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file(small, src / names[0], metadata={"format": "pt"})
    save_file(large, src / names[1], metadata={"format": "pt"})
    wmap = {k: names[0] for k in small} | {k: names[1] for k in large}
    (src / INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    return model


def _run_child(
    src: Path, dst: Path, limit: int, ignore_sigxfsz: bool
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "kernels")])}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(src),
            str(dst),
            str(limit),
            "1" if ignore_sigxfsz else "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_killed_mid_run_leaves_nothing_that_is_reused(tmp_path: Path) -> None:
    """The kernel kills the writer (SIGXFSZ) once it writes past a file-size limit set
    between the first and the second shard's size: a real interruption mid-way."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    model = _two_shards(src)
    first = (src / "model-00001-of-00002.safetensors").stat().st_size
    proc = _run_child(src, dst, first + 4096, ignore_sigxfsz=False)
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr
    assert not dst.exists()
    partial = _siblings(dst)
    assert len(partial) == 1 and ".partial-" in partial[0]
    written = sorted(p.name for p in (dst.parent / partial[0]).iterdir())
    assert written == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert stale_partials(dst) == [dst.parent / partial[0]]

    res = pad_checkpoint(src, dst, 256)  # the next run removes the leftover, starts afresh
    assert _siblings(dst) == []
    assert res["intermediate_size"]["after"] == 256
    ids = token_ids(128, 3)
    assert (logits(model, ids) - logits(dst, ids)).abs().max().item() <= LOGIT_TOL


def test_write_error_after_first_shard_cleans_up(tmp_path: Path) -> None:
    """Same limit with SIGXFSZ ignored: write() fails with EFBIG after the first shard;
    the error propagates and the partial dir is removed."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    _two_shards(src)
    first = (src / "model-00001-of-00002.safetensors").stat().st_size
    proc = _run_child(src, dst, first + 4096, ignore_sigxfsz=True)
    assert proc.returncode == 1
    assert "File too large" in proc.stderr
    _assert_no_output(dst)
