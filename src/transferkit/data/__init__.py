"""Datasets, splits and the named-dataset registry."""

from transferkit.data.datasets import ArrayDataset, ImageFolderDataset, Subset, TextDataset, load_npz, load_text_file
from transferkit.data.registry import DATASETS, data_dir, load_dataset, load_rows
from transferkit.data.splits import Splits, k_shot, label_fraction, make_splits, stratified_split

__all__ = [
    "ArrayDataset", "ImageFolderDataset", "Subset", "TextDataset", "load_npz", "load_text_file",
    "DATASETS", "data_dir", "load_dataset", "load_rows", "Splits", "k_shot", "label_fraction", "make_splits", "stratified_split",
]
