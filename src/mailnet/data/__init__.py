"""The multimodal data layer: image sources, the pairing protocol and the loaders the engine reads.

``build_data(cfg)`` turns the ``data:`` config section into a ``MultimodalData`` whose ``loader(split, ...)``
yields batches in the contract of ``mailnet.data.types``.
"""
from mailnet.data.build import build_data
from mailnet.data.compose import MultimodalData
from mailnet.data.config import parse_data_config
from mailnet.data.manifest import load_manifest
from mailnet.data.sources import (
    MEDMNIST_SIZES,
    CsvSource,
    ImageFolderSource,
    ImageSource,
    MedMNISTSource,
    PairedCsv,
    SourceInfo,
    medmnist_flags_2d,
)
from mailnet.data.types import TASK_TYPES, ModalitySpec, TaskSpec

__all__ = [
    "build_data", "load_manifest", "parse_data_config", "MultimodalData", "ModalitySpec", "TaskSpec", "TASK_TYPES",
    "ImageSource", "SourceInfo", "MedMNISTSource", "ImageFolderSource", "CsvSource", "PairedCsv", "MEDMNIST_SIZES",
    "medmnist_flags_2d",
]
