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

from ..checkpoints import safe_torch_load
from ..errors import LightMedSegError
from ..network import LightMedSeg


class ModelLoadError(LightMedSegError):
    """A trained-model folder could not be found or loaded; the message says what to do."""


TRAINER_NOT_FOUND_FIX = ("nnU-Net does not know the LightMedSeg trainers in this environment. Register them once "
                         "(permanent): lightmedseg install-trainers ; or for this shell only: "
                         "eval \"$(lightmedseg env)\"")


def trainer_not_found_message(error: str) -> str:
    """What to do when nnU-Net cannot find a checkpoint's trainer: register ours when it is one of ours and they
    are not registered; otherwise say that the trainer comes from elsewhere (registering ours would not help)."""
    import re

    from ..training.lookup import trainer_class

    m = re.search(r"trainer (\S+)", error)
    name = m.group(1) if m else "?"
    try:
        trainer_class(name)
        ours = True
    except LookupError:
        ours = False
    registered = lightmedseg_trainers_registered()
    if ours and not registered:
        return f"nnU-Net cannot find the trainer {name} named in this checkpoint. {TRAINER_NOT_FOUND_FIX}"
    return (f"the checkpoint names the trainer {name}, which neither nnU-Net nor nnunetv2-lightmedseg"
            f"{' (registered in this environment)' if registered else ''} provides: install the package that "
            f"defines it (or add its folder to nnUNet_extTrainer), or check that the checkpoint was not edited")


def lightmedseg_trainers_registered() -> bool:
    """Whether nnU-Net's own trainer lookup (what ``nnUNetv2_predict`` uses) finds ``nnUNetTrainer_LightMedSeg``."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    try:
        return recursive_find_trainer_class_by_name("nnUNetTrainer_LightMedSeg") is not None
    except RuntimeError:
        return False


def check_network_records(folder: Path, fold, checkpoint: str) -> None:
    """Refuse (ModelLoadError naming the differences) a checkpoint whose network record differs in any field, the
    channel counts included, from the one in the folder's plans.json, which nnU-Net's predictor builds the network
    from (see network.record). The checkpoint is read without executing code (:mod:`..checkpoints`)."""
    import json

    from ..checkpoints import load_checkpoint
    from ..network.record import KEY, record_differences

    ckpt_file = Path(folder) / f"fold_{fold}" / checkpoint
    ckpt = load_checkpoint(ckpt_file)
    stored = ckpt.get(KEY)
    if stored is None:
        return  # a model trained before records existed: built from the trainer's options, as before
    try:
        plans = json.loads((Path(folder) / "plans.json").read_text())
    except ValueError as e:
        raise ModelLoadError(f"{folder / 'plans.json'} is not valid JSON ({e}): restore it from the model's zip "
                             f"or training folder") from None
    try:
        configuration = ckpt["init_args"]["configuration"]
    except (KeyError, TypeError):
        raise ModelLoadError(f"{ckpt_file} has no init_args['configuration']: it is not a checkpoint nnU-Net "
                             f"wrote") from None
    expected = _channel_counts(folder, plans, configuration)
    for record, where in ((stored, str(ckpt_file)), (plans.get("configurations", {}).get(configuration, {}).get(KEY),
                                                      str(folder / "plans.json"))):
        if isinstance(record, dict) and expected:
            wrong = [f"{name} {record.get(name)!r} where dataset.json/plans.json give {value}"
                     for name, value in expected.items() if name in record and record.get(name) != value]
            if wrong:
                raise ModelLoadError(f"{where}: the LightMedSeg network record says {'; '.join(wrong)}: the record "
                                     f"was edited or belongs to another model; restore the model folder from its "
                                     f"source")
    planned = plans.get("configurations", {}).get(configuration, {}).get(KEY)
    if planned is None:
        return
    try:
        diff = record_differences(stored, planned)
    except (AttributeError, TypeError):
        raise ModelLoadError(f"{folder / 'plans.json'}: the '{KEY}' entry is malformed") from None
    if diff:
        raise ModelLoadError(
            f"{ckpt_file} was trained with a different LightMedSeg network than the one {folder / 'plans.json'} "
            f"describes (nnU-Net builds the network from plans.json): "
            + "; ".join(d.replace("(built)", "(plans.json)").replace("(stored)", "(checkpoint)") for d in diff)
            + f". Restore plans.json's '{KEY}' entry from the checkpoint's.")


def _channel_counts(folder: Path, plans: dict, configuration: str) -> dict:
    """``{"input_channels", "num_classes"}`` as nnU-Net's predictor derives them from the folder's dataset.json and
    plans (what the network is built with); empty when the folder does not say."""
    import json

    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    try:
        dataset_json = json.loads((Path(folder) / "dataset.json").read_text())
        manager = PlansManager(plans)
        return {"input_channels": int(determine_num_input_channels(
                    manager, manager.get_configuration(configuration), dataset_json)),
                "num_classes": int(manager.get_label_manager(dataset_json).num_segmentation_heads)}
    except Exception:  # an incomplete folder: load_predictor's own checks name what is missing
        return {}


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
    from ..network.record import NetworkConfigError
    try:
        with safe_torch_load():  # nnU-Net's loader would unpickle without the weights-only restriction
            predictor.initialize_from_trained_model_folder(str(folder), (fold,), checkpoint_name=checkpoint)
    except NetworkConfigError as e:
        raise ModelLoadError(str(e)) from None
    except RuntimeError as e:
        if "Could not find requested nnunet trainer" in str(e):
            raise ModelLoadError(trainer_not_found_message(str(e))) from None
        raise
    predictor.network.eval()
    return predictor


def find_lightmedseg(network: nn.Module) -> Optional[LightMedSeg]:
    """The LightMedSeg inside ``network`` (the network itself, or a wrapper's submodule); None if there is none."""
    for m in network.modules():
        if isinstance(m, LightMedSeg):
            return m
    return None
