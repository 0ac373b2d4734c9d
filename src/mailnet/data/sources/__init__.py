"""Image sources: MedMNIST 2D ``.npz`` files, image folders, CSV manifests (single-modality and paired)."""
from mailnet.data.sources.base import SPLITS, ImageSource, SourceInfo
from mailnet.data.sources.csv_manifest import CsvSource
from mailnet.data.sources.image_folder import ImageFolderSource
from mailnet.data.sources.medmnist_npz import (
    MEDMNIST_SIZES,
    MedMNISTSource,
    available_sizes,
    candidate_paths,
    find_npz,
    medmnist_flags_2d,
)
from mailnet.data.sources.paired_csv import PairedColumnSource, PairedCsv, PairedTaskDef

__all__ = [
    "SPLITS", "ImageSource", "SourceInfo", "CsvSource", "ImageFolderSource", "MedMNISTSource", "MEDMNIST_SIZES",
    "available_sizes", "candidate_paths", "find_npz", "medmnist_flags_2d", "PairedColumnSource", "PairedCsv",
    "PairedTaskDef",
]
