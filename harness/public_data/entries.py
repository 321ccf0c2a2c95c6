"""The public datasets the harness knows: where to download them and how to check them.

Each :class:`Dataset` is one or more :class:`DataFile` downloads, every one pinned by checksum:
``sha256`` where the publisher lists it (Hugging Face LFS pages do) or it was computed from a
commit-pinned copy, and/or ``git_blob``, the git object id of the file in the commit the URL
pins. A git blob id is a content hash (SHA-1 of ``"blob <size>\\0"`` + bytes), so it verifies a
raw file served from that commit even where no sha256 is published. An entry with neither can
only be fetched with a checksum the user supplies (``harness data fetch NAME --sha256 HEX``).

The registry is declared once, as data, in :data:`_ENTRIES`, and validated into :data:`REGISTRY`
at import. Downloads land under ``<cache>/<name>/<path>``; a zip keeps its archive and is also
extracted into the sibling directory ``extract``. ``data://NAME/inner/path`` addresses
``<cache>/<name>/inner/path``; ``data://NAME`` alone means the entry's ``default``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from harness.public_data.errors import DatasetError

_NAME = r"^[a-z0-9][a-z0-9-]*$"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def check_relpath(path: str, what: str = "path") -> str:
    """Validate a relative POSIX path that stays inside its root.

    Args:
        path: The path (``a/b.json``).
        what: What it is, for the message.

    Returns:
        The path, normalised (no ``.`` parts, no trailing slash).

    Raises:
        ValueError: Empty, absolute, with a backslash or a ``..`` part.
    """
    p = PurePosixPath(path)
    if not path or "\\" in path or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{what} must be a relative path inside the dataset, got {path!r}")
    return p.as_posix()


def check_sha256(value: str | None) -> str | None:
    """Lower-case a sha256 hex digest; None passes.

    Raises:
        ValueError: Not 64 hex digits.
    """
    if value is None:
        return None
    value = value.strip().lower()
    if not _HEX64.match(value):
        raise ValueError(f"sha256 must be 64 hex digits, got {value!r}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataFile(_Model):
    """One download of a dataset."""

    path: str = Field(description="Where the file goes, relative to the dataset directory.")
    urls: list[str] = Field(
        min_length=1, description="Download URLs: the first is tried first, the rest are mirrors."
    )
    sha256: str | None = Field(None, description="sha256 of the file (None: not published).")
    git_blob: str | None = Field(
        None, description="Git blob id (SHA-1) of the file in the commit its URL pins."
    )
    size: int | None = Field(None, ge=0, description="Size in bytes (None: not published).")
    extract: str | None = Field(
        None, description="Zip only: directory, relative to the dataset, to extract it into."
    )

    @field_validator("path", "extract")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        return None if v is None else check_relpath(v)

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, v: str | None) -> str | None:
        return check_sha256(v)

    @field_validator("git_blob")
    @classmethod
    def _git_blob(cls, v: str | None) -> str | None:
        if v is not None and not _HEX40.match(v):
            raise ValueError(f"git_blob must be 40 lower-case hex digits, got {v!r}")
        return v

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("https://", "http://", "file://")):
                raise ValueError(f"URL must be http(s):// or file://, got {url!r}")
        return v

    @property
    def verifiable(self) -> bool:
        """True when the registry pins the file's content (sha256 or git blob id)."""
        return self.sha256 is not None or self.git_blob is not None


class Dataset(_Model):
    """A named dataset of the registry."""

    name: str = Field(pattern=_NAME, description="The name specs use: ``data://NAME``.")
    description: str = Field(description="One line: what it is.")
    licence: str = Field(description="Licence of the data (SPDX id where there is one).")
    homepage: str = Field(description="Where it is published and documented.")
    citation: str | None = Field(None, description="The paper to cite.")
    layout: Literal["file", "zip", "files"] = Field(
        description="``file``: one file; ``zip``: one archive, also extracted; ``files``: several."
    )
    files: list[DataFile] = Field(min_length=1, description="The downloads.")
    default: str | None = Field(
        None, description="What ``data://NAME`` means, relative to the dataset directory."
    )
    contents: str = Field(description="What the paths inside are (formats, fields).")
    notes: str | None = Field(None, description="Provenance and caveats (unpublished checksums).")

    @field_validator("default")
    @classmethod
    def _default(cls, v: str | None) -> str | None:
        return None if v is None else check_relpath(v, "default")

    @model_validator(mode="after")
    def _layout(self) -> Dataset:
        zips = [f for f in self.files if f.extract is not None]
        if self.layout == "zip" and (len(self.files) != 1 or not zips):
            raise ValueError("layout zip: exactly one file, with `extract`")
        if self.layout == "file" and (len(self.files) != 1 or zips):
            raise ValueError("layout file: exactly one file, without `extract`")
        if self.layout == "files" and zips:
            raise ValueError("layout files: no `extract`")
        paths = [f.path for f in self.files] + [f.extract for f in zips if f.extract]
        if len(set(paths)) != len(paths):
            raise ValueError("file paths and extract directories must be distinct")
        return self

    @property
    def size(self) -> int | None:
        """Total download size in bytes; None when any file's size is unpublished."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def verifiable(self) -> bool:
        """True when every file's content is pinned (else fetching needs ``--sha256``)."""
        return all(f.verifiable for f in self.files)


# --------------------------------------------------------------------------- entries

_SHOPBENCH_KIT = (
    "https://raw.githubusercontent.com/Keita18/amazon-kdd-cup-2024-starter-kit/"
    "4835f57faef0e77e2a9a56f846873f53a1111502"
)
_SHOPPING_MMLU = (
    "https://raw.githubusercontent.com/KL4805/ShoppingMMLU/67c8084a0810d5602dabfff4b8fb1c63f7b0df6f"
)
_EC_GUIDE = (
    "https://raw.githubusercontent.com/fzp0424/EC-Guide-KDDUP-2024/"
    "b8dfdb8cf49a303344dfedc9f282ee912ea96f44"
)
_ECINSTRUCT = (
    "https://huggingface.co/datasets/NingLab/ECInstruct/resolve/"
    "62c370aabb12fa26111d53f5893a54cc82bd5ec9"
)

# EC-Guide at commit b8dfdb8: (path, sha256, size, git blob id). The sha256 and size of the
# three files marked None are not published anywhere; their git blob ids verify them.
# fmt: off
_EC_GUIDE_FILES: tuple[tuple[str, str | None, int | None, str], ...] = (
    ("LICENSE", "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4", 11357, "261eeb9e9f8b2b4b0d119366dda99c6fd7d35c64"),
    ("EC-Guide/Generation/CR.json", "d446b0826f6da44786f945bdcc1315b1ab04847201e7b77bfbfbeb7ec17e2029", 328924, "6ceb7098c0ea53fbca5d87f837e99c52b98b3226"),
    ("EC-Guide/Generation/EBT.json", "408be5a8ba8d4861b1377a171dc85092ee4560f012258c1141ac0115c28f7a00", 1103338, "e4baa28d77e4c22dbc4434751b6229125a2bea72"),
    ("EC-Guide/Generation/EPF.json", "1a215b01227da5c7b20d9d72a6dd2715c047fcce076c47e7f93cf4af7d16726a", 1720366, "4ef905feb455a234a39131cbb722a55b0f9dcea0"),
    ("EC-Guide/Generation/EPK.json", "3f4b86d96252082056d48eee4409b34b9239c2b71413c1e42a1e88f07bccdce8", 1541378, "736d22242b2335406309ebfae23a274ac76dc115"),
    ("EC-Guide/Generation/ERK.json", "d1fd18fc4bbf8a0ee860e2435f19992d6411f42f7bad6857b670bfb5e12eb71b", 599204, "356fd15b4607c584a1e7e5210998b949f91314eb"),
    ("EC-Guide/Generation/MT.json", "1014cd2575a041a891ed82c6d619edb2ffdd90358e3917512a446d0452eeeb70", 1492318, "4525a01b21843ca3c9482d553301a162492e7e02"),
    ("EC-Guide/Generation/PE.json", "3de6054703639ce9249d1c36b93fc1b1327b23b681ec1c5b7a16cda62cacf8ea", 165897, "7bae72cf6fed90a360b6b5bfa54cb8d0fe30a582"),
    ("EC-Guide/Generation/PKS.json", "d4a182f57c8c5d5d89a3a268d196c821065e040b2df83eb418d2f28293464e77", 1063027, "443875e8e36a9da91fc2aa1c60185e44a1fab019"),
    ("EC-Guide/Generation/PQA.json", "8d0390a6c4e9393b302a0c0f8bc7b265026aa7d280f07ed32914ab8befab6675", 4106381, "34c38af560b8116f71cd5a2de5124d88f5a3e6d2"),
    ("EC-Guide/Generation/RTS.json", "56c7097060e06f301cd7f08e79a8f7ba1ea7e80308a3a77fde1dc1b46fa5e6be", 832303, "5f67d81eadc46aee6f90f192e5abaf6b406ee457"),
    ("EC-Guide/MCQ/ACR.json", "f51b1e0616fa86a7eac52f7d48fbdca12fba155cbdb94b4115ff6d03f7f619fd", 3682991, "e70b7b840532eed4a34dfb4e36ec13812e727453"),
    ("EC-Guide/MCQ/MDM.json", "265087d47a07605298ef747a58110f2b462fef2d40fa7d19d285af06285d4a40", 479801, "410aa694841f64a993a6b899c543d39f99c4ed7f"),
    ("EC-Guide/MCQ/PKS.json", "566b92706c6ab239355aa10412ea037aaea988b45f6b5dd88e8902cb5b52d7ef", 324555, "d1a24d70619f1b6e1c22556238578c69863dce23"),
    ("EC-Guide/MCQ/PRP.json", "a4efb9793e3a3d727aae3797336f4bb06db55c50227131953cd68e6f92578d6f", 1084744, "64368875730d3166d4c1a9c96ea9113524a532ac"),
    ("EC-Guide/MCQ/QPRJ.json", "d121b51ca6923a537157d1c7a95f8a3a9395fac79829d192a1f14759bcff9e17", 220841, "159afdeda62b6446c36f5211c311734de5d4e2b9"),
    ("EC-Guide/MCQ/QPRP.json", "5d16ce613286ee4de79afe376f4ca24be234ef7b04c29b3c07eb7609122c0e55", 1390197, "9ee61675beb651b1ebb8580ae689fa0f5fbb6518"),
    ("EC-Guide/MCQ/SA.json", "dd8707a73dc5d39b89c960405e2d514c197d62c90cc772147cad7441eba9e5db", 2116551, "da177fab9f64774614b893248689e526981ff184"),
    ("EC-Guide/MCQ/SAP.json", "4db8ce0d6824c1c64b9c145dd1a673b1b4a8d83b2be63211de7d1e60a80997f0", 449842, "e24bcf3a3510713660f96f31883c2c68c1e22bb0"),
    ("EC-Guide/MCQ/SPA.json", "a3e436a271d73d08d98b9e4390c911405808afd042484c3cebed065f9892e096", 237349, "0c3de22422685e5652c616d1052af53e3fe0a23a"),
    ("EC-Guide/NER/NER.json", "506f09f8ce67a4a7e2b4066ab17c7533336e1b59468a19dcf109dba71734d8cb", 2333444, "f7b446250bc83f6e8bb92a99445d4a488ff540db"),
    ("EC-Guide/Ranking/QPR.json", None, None, "28f34832b03ae6ae0a768e31fe38a43ff9cdf96b"),
    ("EC-Guide/Retrieval/CR.json", None, None, "571ed287b21e0bfdd6e78a4b22c372347f1f413f"),
    ("EC-Guide/Retrieval/IPP.json", None, None, "5d746d81349530b4dc9d215d903b2cc7a45ea5ea"),
    ("EC-Guide/Retrieval/PR.json", "633793174645c371d42244af12b07194cc624232519d6e57bfaf4c10d8be340d", 2608106, "98f781addc1a86cca3266d9f6c904cc5653450da"),
    ("EC-Guide/Retrieval/RRA.json", "2638eae0751dc94f3fba073fe313fe1c1cc63eadacbdc43082593936534b02bb", 931591, "d04599a7dc5ad6621e48e7b65701d203f08da65c"),
    ("EC-Guide/Retrieval/RRS.json", "7ba4b5022a6fd56268897e34b8863b0d3dd59c6ae73565dffb92387164a95c07", 793204, "9bc9e3c1e59f2d42a02c54fd52e37d3caf109b09"),
)
# fmt: on

_ENTRIES: list[dict[str, Any]] = [
    {
        "name": "shopbench-dev",
        "description": "Amazon KDD Cup 2024 ShopBench development set (96 rows, 18 tasks, 4 tracks).",
        "licence": "unspecified (challenge data)",
        "homepage": "https://www.aicrowd.com/challenges/"
        "amazon-kdd-cup-2024-multi-task-online-shopping-challenge-for-llms",
        "citation": "Jin et al., Shopping MMLU: A Massive Multi-Task Online Shopping Benchmark "
        "for Large Language Models, NeurIPS 2024 Datasets and Benchmarks, arXiv:2410.20745",
        "layout": "file",
        "files": [
            {
                "path": "development.json",
                "urls": [f"{_SHOPBENCH_KIT}/data/development.json"],
                "sha256": "a73043af0d7a19ac5a769e27264084600c83fe71babc2fde4fbbb2269fc462f5",
                "git_blob": "81014690a7ff7ac828df69d8adfe48878fdbc040",
                "size": 81981,
            }
        ],
        "default": "development.json",
        "contents": "development.json: JSON Lines, keys input_field, output_field, task_name, "
        "task_type, metric, is_multiple_choice, track.",
        "notes": "data/development.json of the AIcrowd starter kit (which ships no licence file), "
        "from a GitHub mirror of it pinned at commit 4835f57; the file last changed in b77d6a8 "
        "(2024-03-26).",
    },
    {
        "name": "shopping-mmlu",
        "description": "Shopping MMLU: the multi-task online-shopping benchmark behind ShopBench.",
        "licence": "Apache-2.0",
        "homepage": "https://github.com/KL4805/ShoppingMMLU",
        "citation": "Jin et al., Shopping MMLU: A Massive Multi-Task Online Shopping Benchmark "
        "for Large Language Models, NeurIPS 2024 Datasets and Benchmarks, arXiv:2410.20745",
        "layout": "zip",
        "files": [
            {
                "path": "data.zip",
                "urls": [f"{_SHOPPING_MMLU}/data.zip"],
                "sha256": "899bad7b0e30d43bac50d4e110120b009ac39a3a84a4ab92f5db25edd3278cef",
                "git_blob": "0f10822e7eec7752c0be0d251f28e6f47fb07f8b",
                "size": None,
                "extract": "data",
            }
        ],
        "default": "data",
        "contents": "data.zip, extracted under data/: multiple_choice/<task>_dataset.csv "
        "(question, choices, answer); retrieval/, ranking/, named_entity_recognition/ and "
        "generation/<task>_dataset.json (JSON Lines, input_field, target_field); "
        "skills/<skill>.json (JSON Lines, ShopBench fields, one file per skill).",
        "notes": "data.zip as added in commit 67c8084 (unchanged since). Its size is not "
        "published; the layout inside is the one the benchmark's evaluation code reads.",
    },
    {
        "name": "ec-guide",
        "description": "EC-Guide: e-commerce instruction-tuning data in ShopBench format.",
        "licence": "Apache-2.0",
        "homepage": "https://github.com/fzp0424/EC-Guide-KDDUP-2024",
        "citation": "Feng, Meng and Liu, EC-Guide: A Comprehensive E-Commerce Guide for "
        "Instruction Tuning and Quantization, arXiv:2408.02970",
        "layout": "files",
        "files": [
            {"path": p, "urls": [f"{_EC_GUIDE}/{p}"], "sha256": s, "size": n, "git_blob": b}
            for p, s, n, b in _EC_GUIDE_FILES
        ],
        "default": "EC-Guide",
        "contents": "EC-Guide/<Type>/<Subtask>.json, Type in Generation, MCQ, NER, Ranking, "
        "Retrieval: one JSON array per file of {input_field, output_field, task_type, metric}; "
        "LICENSE.",
        "notes": "The GitHub repository at commit b8dfdb8 (2024-08-12); also published as the "
        "Hugging Face dataset AiMijie/EC-Guide. Ranking/QPR.json, Retrieval/CR.json and "
        "Retrieval/IPP.json have no published sha256 or size: they are verified by git blob id. "
        "Some rows use metric `bool`; MCQ/ACR.json mixes generation rows into MCQ.",
    },
    {
        "name": "ecinstruct",
        "description": "ECInstruct: e-commerce instruction data over 10 tasks (eCeLLM).",
        "licence": "CC-BY-4.0",
        "homepage": "https://huggingface.co/datasets/NingLab/ECInstruct",
        "citation": "Peng, Ling, Chen, Sun and Ning, eCeLLM: Generalizing Large Language Models "
        "for E-commerce from Large-scale, High-quality Instruction Data, ICML 2024, "
        "arXiv:2402.08831",
        "layout": "file",
        "files": [
            {
                "path": "dataset.json",
                "urls": [f"{_ECINSTRUCT}/dataset.json"],
                "sha256": "e9f83568e1da82ef6e24440c814b16ac346c1d04c82cfa2005ac357630868f9f",
                "size": 528589764,
            }
        ],
        "default": "dataset.json",
        "contents": "dataset.json: the ECInstruct items (instruction, input, options, output, "
        "task, split, setting); the mix filters on split and setting.",
        "notes": "dataset.json as of Hugging Face commit 62c370a (sha256 and size from its "
        "LFS pointer). The repository's main branch may hold a later revision.",
    },
]

REGISTRY: dict[str, Dataset] = {
    d.name: d for d in TypeAdapter(list[Dataset]).validate_python(_ENTRIES)
}


def get_dataset(name: str, registry: Mapping[str, Dataset] | None = None) -> Dataset:
    """The registry entry of ``name``.

    Args:
        name: Dataset name.
        registry: The registry to look in (default: :data:`REGISTRY`).

    Returns:
        The entry.

    Raises:
        DatasetError: Unknown name; the message lists the known ones.
    """
    reg = REGISTRY if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        known = ", ".join(sorted(reg)) or "none"
        raise DatasetError(f"unknown dataset {name!r} (known: {known})") from None
