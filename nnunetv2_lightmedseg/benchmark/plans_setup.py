"""What ``lightmedseg benchmark`` and ``lightmedseg profile`` build both networks from: nnU-Net plans, a
configuration and a dataset.json (:class:`BenchmarkSetup`), read from a preprocessed dataset
(:func:`setup_from_dataset`) or written for a patch shape (:func:`~.default_plans.plans_for_shape`)."""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass
class BenchmarkSetup:
    """What both networks are built from: nnU-Net plans, a configuration and a dataset.json."""
    plans: dict
    configuration: str
    dataset_json: dict
    source: str  # human-readable: where the plans came from
    #: the configuration's preprocessed cases (nnUNet_preprocessed/DatasetXXX/<data_identifier>), when they exist:
    #: the training-step benchmark then trains on real patches (:meth:`~.train_step.TrainStep.make_batch`)
    data_folder: Optional[str] = None

    @property
    def configuration_manager(self):
        return self.plans_manager.get_configuration(self.configuration)

    @property
    def plans_manager(self):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        return PlansManager(copy.deepcopy(self.plans))

    @property
    def patch_size(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self.configuration_manager.patch_size)

    @property
    def batch_size(self) -> int:
        return int(self.configuration_manager.batch_size)

    @property
    def num_input_channels(self) -> int:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        return int(determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json))

    @property
    def num_outputs(self) -> int:
        return int(self.plans_manager.get_label_manager(self.dataset_json).num_segmentation_heads)

    def save(self, folder: str) -> str:
        """Write plans/dataset.json/configuration to ``folder`` (for the memory probe subprocess)."""
        path = os.path.join(folder, "setup.json")
        with open(path, "w") as f:
            json.dump({"plans": self.plans, "configuration": self.configuration,
                       "dataset_json": self.dataset_json, "source": self.source, "data_folder": self.data_folder}, f)
        return path

    @classmethod
    def load(cls, path: str) -> "BenchmarkSetup":
        with open(path) as f:
            d = json.load(f)
        return cls(d["plans"], d["configuration"], d["dataset_json"], d["source"], d.get("data_folder"))


def setup_from_dataset(dataset: str, configuration: str, plans_identifier: str = "nnUNetPlans") -> BenchmarkSetup:
    """Plans and dataset.json of a preprocessed dataset (``nnUNet_preprocessed/DatasetXXX``)."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_preprocessed.is_set():
        raise ValueError("nnUNet_preprocessed is not set: export nnUNet_preprocessed=/path/to/preprocessed "
                         "(or measure an explicit shape with --shape C X Y Z)")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise ValueError(f"dataset {dataset!r} not found: {e}") from None
    folder = os.path.join(str(nnUNet_preprocessed), name)
    plans_file = os.path.join(folder, plans_identifier + ".json")
    ds_file = os.path.join(folder, "dataset.json")
    for f in (plans_file, ds_file):
        if not os.path.isfile(f):
            raise ValueError(f"{f} does not exist: run nnUNetv2_plan_and_preprocess -d {dataset} first "
                             f"(or pass -p with the plans identifier you used)")
    with open(plans_file) as f:
        plans = json.load(f)
    with open(ds_file) as f:
        dataset_json = json.load(f)
    if configuration not in plans.get("configurations", {}):
        raise ValueError(f"configuration {configuration!r} is not in {plans_file}; available: "
                         f"{', '.join(plans.get('configurations', {}))}")
    setup = BenchmarkSetup(plans, configuration, dataset_json, f"{plans_file} [{configuration}]")
    data_folder = os.path.join(folder, setup.configuration_manager.data_identifier)  # (inherited configs too)
    if os.path.isdir(data_folder):  # planned but not preprocessed: the training step uses random labels
        setup.data_folder = data_folder
    return setup
