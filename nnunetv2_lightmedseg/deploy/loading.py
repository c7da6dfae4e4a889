"""Load a trained nnU-Net model exactly the way ``nnUNetv2_predict`` does.

``lightmedseg export`` and ``lightmedseg explain`` both start from a training output folder
(``$nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG/fold_F/CHECKPOINT``). We do not re-implement checkpoint
loading: :meth:`nnunetv2.inference.predict_from_raw_data.nnUNetPredictor.initialize_from_trained_model_folder`
re-finds the trainer class by the name stored in the checkpoint, lets it build the network from the plans
and loads the weights. What we add is a clear message for each way the folder can be wrong, instead of a
``KeyError`` or ``FileNotFoundError`` deep inside nnU-Net.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..network import LightMedSeg


class ModelLoadError(RuntimeError):
    """A trained-model folder could not be found or loaded; the message says what to do."""


TRAINER_NOT_FOUND_FIX = ("nnU-Net does not know the LightMedSeg trainers in this environment. Register them once "
                         "(permanent): lightmedseg install-trainers ; or for this shell only: "
                         "eval \"$(lightmedseg env)\"")


def check_network_records(folder: Path, fold, checkpoint: str) -> None:
    """Refuse (ModelLoadError naming the differences) a checkpoint whose network record differs from the one in
    the folder's plans.json, which nnU-Net's predictor builds the network from (see training.network_config)."""
    import json

    from ..training.network_config import KEY, differences

    ckpt_file = Path(folder) / f"fold_{fold}" / checkpoint
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False)
    stored = ckpt.get(KEY)
    if stored is None:
        return  # a model trained before records existed: built from the trainer's options, as before
    plans = json.loads((Path(folder) / "plans.json").read_text())
    configuration = ckpt["init_args"]["configuration"]
    planned = plans.get("configurations", {}).get(configuration, {}).get(KEY)
    if planned is None:
        return
    try:
        diff = differences(stored.get("config", {}), planned.get("config", {}))
    except (AttributeError, TypeError):
        raise ModelLoadError(f"{folder / 'plans.json'}: the '{KEY}' entry is malformed") from None
    if diff:
        raise ModelLoadError(
            f"{ckpt_file} was trained with a different LightMedSeg network than the one {folder / 'plans.json'} "
            f"describes (nnU-Net builds the network from plans.json):\n  "
            + "\n  ".join(d.replace("(built)", "(plans.json)").replace("(stored)", "(checkpoint)") for d in diff)
            + f"\nRestore plans.json's '{KEY}' entry from the checkpoint (torch.load(CHECKPOINT)['{KEY}']).")


def model_folder(dataset: Union[int, str], configuration: str, trainer: str,
                 plans: str = "nnUNetPlans") -> Path:
    """``$nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG`` (nnU-Net's own naming, via its helpers)."""
    if not os.environ.get("nnUNet_results"):
        raise ModelLoadError("nnUNet_results is not set: export it to the folder that holds your trained models "
                             "(the same value you used for nnUNetv2_train)")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    try:
        maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise ModelLoadError(f"dataset {dataset!r} not found: {e}") from None
    return Path(get_output_folder(dataset, trainer, plans, configuration))


def load_predictor(dataset: Union[int, str], configuration: str, fold: Union[int, str], trainer: str,
                   plans: str = "nnUNetPlans", checkpoint: str = "checkpoint_final.pth",
                   folder: Optional[Union[str, Path]] = None):
    """Return an initialised ``nnUNetPredictor`` on the CPU for one fold of a trained model.

    ``folder`` (the ``TRAINER__PLANS__CONFIG`` directory) overrides ``dataset/configuration/trainer/plans``.
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder = Path(folder) if folder is not None else model_folder(dataset, configuration, trainer, plans)
    if not folder.is_dir():
        raise ModelLoadError(f"no trained model at {folder}: train it first (nnUNetv2_train {dataset} {configuration} "
                             f"{fold} -tr {trainer} -p {plans}) or check -d/-c/-tr/-p")
    fold = fold if str(fold) == "all" else int(fold)
    ckpt = folder / f"fold_{fold}" / checkpoint
    if not ckpt.is_file():
        have = sorted(p.name for p in (folder / f"fold_{fold}").glob("*.pth")) if (folder / f"fold_{fold}").is_dir() else []
        raise ModelLoadError(f"checkpoint {ckpt} not found" + (f" (this fold has: {', '.join(have)}; pick one with "
                                                               f"-chk)" if have else
                                                               " (is the fold trained?)"))
    for name in ("plans.json", "dataset.json"):
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder / name} is missing: the model folder is incomplete (nnU-Net writes it "
                                 f"at the start of training)")
    check_network_records(folder, fold, checkpoint)
    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    from ..training.network_config import NetworkConfigError
    try:
        predictor.initialize_from_trained_model_folder(str(folder), (fold,), checkpoint_name=checkpoint)
    except NetworkConfigError as e:
        raise ModelLoadError(str(e)) from None
    except RuntimeError as e:
        if "Could not find requested nnunet trainer" in str(e):
            raise ModelLoadError(f"{e}\n{TRAINER_NOT_FOUND_FIX}") from None
        raise
    predictor.network.eval()
    return predictor


def find_lightmedseg(network: nn.Module) -> Optional[LightMedSeg]:
    """The LightMedSeg inside ``network`` (the network itself, or a wrapper's submodule); None if there is none."""
    for m in network.modules():
        if isinstance(m, LightMedSeg):
            return m
    return None
