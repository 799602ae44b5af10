"""Offline datasets: readers, writer, locations, statistics and window sampling."""

from dt.data.dataset import DatasetError, DatasetStats, OfflineDataset, make_dataset, split_episodes
from dt.data.io import dataset_to_arrays, read_d4rl, read_minari, write_d4rl
from dt.data.locate import KNOWN_DATASETS, canonical_name, download, generated_dir, load_dataset, locate

_LAZY = {"Batch", "WindowSampler"}  # dt.data.windows imports torch: loaded on first use, so data commands stay light


def __getattr__(name: str):  # PEP 562
    if name in _LAZY:
        from dt.data import windows

        return getattr(windows, name)
    raise AttributeError(f"module 'dt.data' has no attribute {name!r}")


__all__ = [
    "KNOWN_DATASETS",
    "Batch",
    "DatasetError",
    "DatasetStats",
    "OfflineDataset",
    "WindowSampler",
    "canonical_name",
    "dataset_to_arrays",
    "download",
    "generated_dir",
    "load_dataset",
    "locate",
    "make_dataset",
    "read_d4rl",
    "read_minari",
    "split_episodes",
    "write_d4rl",
]
