"""Named public datasets: a registry, a verified resumable fetcher and offline resolution.

Specs name data as ``data://NAME`` or ``data://NAME/inner/path`` instead of filesystem paths;
:func:`resolve` maps a reference to the local cache without touching the network and, when
the dataset is absent, fails with the command that gets it (``harness data fetch NAME``).

* :mod:`harness.public_data.entries` — the entries (:data:`REGISTRY`): URLs, checksums, sizes,
  licences, layout.
* :mod:`harness.public_data.fetch` — :func:`fetch`: HTTP(S) download with ``Range`` resume,
  checksum verification and atomic publishing into the cache.
* :mod:`harness.public_data.cache` — :func:`data_dir`, :func:`resolve`, :func:`list_datasets`.

The cache is ``$HARNESS_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/shopbench-harness/data``
(``~/.cache`` when ``XDG_CACHE_HOME`` is unset).
"""

from __future__ import annotations

from harness.public_data.cache import (
    DatasetRow,
    cache_status,
    data_dir,
    fetch_command,
    is_ref,
    list_datasets,
    resolve,
    resolve_path,
)
from harness.public_data.entries import REGISTRY, DataFile, Dataset, get_dataset
from harness.public_data.errors import ChecksumError, DatasetError, DatasetNotCachedError
from harness.public_data.fetch import Progress, fetch

__all__ = [
    "REGISTRY",
    "ChecksumError",
    "DataFile",
    "Dataset",
    "DatasetError",
    "DatasetNotCachedError",
    "DatasetRow",
    "Progress",
    "cache_status",
    "data_dir",
    "fetch",
    "fetch_command",
    "get_dataset",
    "is_ref",
    "list_datasets",
    "resolve",
    "resolve_path",
]
