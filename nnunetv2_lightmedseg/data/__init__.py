"""Synthetic nnU-Net raw datasets (:mod:`.synthetic`) for ``lightmedseg demo`` and the end-to-end tests."""
from ..utils.names import dataset_folder_name
from .synthetic import (label_case, region_case, thick_slice_case, write_label_dataset, write_region_dataset,
                        write_thick_slice_dataset)

__all__ = ["dataset_folder_name", "label_case", "region_case", "thick_slice_case",
           "write_label_dataset", "write_region_dataset", "write_thick_slice_dataset"]
