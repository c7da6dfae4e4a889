"""The network configuration a trained LightMedSeg model carries with it.

A trained model must not depend on the defaults of whatever plugin version is installed when it is loaded: a
changed default would either fail at the strict ``load_state_dict`` or, worse, silently change predictions.
The trainer therefore records ``LightMedSeg.config`` (every constructor argument but the channel counts) as a
*network record*::

    {"network": "LightMedSeg", "input_channels": 1, "num_classes": 3, "config": {...}, "plugin_version": "0.1.0"}

and stores it in two places, both written by the trainer from the network it built:

* the results folder's ``plans.json``, under ``configurations[CONFIGURATION]["lightmedseg_network"]``. nnU-Net's
  trainer copies its plans there at the start of training, and ``nnUNetPredictor`` (``nnUNetv2_predict``,
  ``lightmedseg export/explain``, the final validation) builds the network from that copy: this is the only
  place ``build_network_architecture`` can read it from, because nnU-Net passes it the plans, not the checkpoint.
  The entry travels with ``nnUNetv2_export_model_to_zip``/``_install_pretrained_model_from_zip`` and is ignored by
  stock nnU-Net code;
* every checkpoint, under the top-level key ``"lightmedseg_network"`` (not in the state dict: nnU-Net's
  ``-pretrained_weights`` loader requires every state-dict entry to be a tensor of the same shape). ``--c``,
  ``--val`` and ``--val_best`` build the network from the checkpoint's record, and a checkpoint whose record
  differs from the network it is loaded into is refused with a message that names the differences.

A results folder holds one network configuration for all its folds (nnU-Net's predictor builds one network and
loads every fold's weights into it): a new fold trained into a folder whose ``plans.json`` already has a record
uses that record, even if the installed plugin's defaults changed since. Models trained before records existed
have none and are built from the trainer's options, as before.
"""
from __future__ import annotations

import inspect
import json
from typing import Any, Dict, List, Mapping

from torch import nn

from ..errors import LightMedSegError
from .lightmedseg import LightMedSeg

KEY = "lightmedseg_network"


class NetworkConfigError(LightMedSegError):
    """A stored network configuration cannot be used; the message says why and what to do."""


def plugin_version() -> str:
    from .. import __version__
    return __version__


def jsonable(config: Mapping[str, Any]) -> Dict[str, Any]:
    """``config`` as it reads back from JSON (tuples become lists), so stored and built configs compare equal."""
    return json.loads(json.dumps(dict(config)))


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside DDP / ``torch.compile`` wrappers (what nnU-Net saves the state dict of)."""
    while True:
        if hasattr(network, "module") and isinstance(network.module, nn.Module):  # DDP / DataParallel
            network = network.module
        elif hasattr(network, "_orig_mod"):  # torch.compile
            network = network._orig_mod
        else:
            return network


def make_record(network: nn.Module) -> Dict[str, Any]:
    """The network record of a built LightMedSeg (possibly wrapped)."""
    net = unwrap(network)
    if not isinstance(net, LightMedSeg):
        raise TypeError(f"expected a LightMedSeg network, got {type(net).__name__}")
    return {"network": type(net).__name__, "input_channels": int(net.input_channels),
            "num_classes": int(net.num_classes), "config": jsonable(net.config), "plugin_version": plugin_version()}


def constructor_options() -> List[str]:
    """Keyword arguments of ``LightMedSeg`` besides the channel counts (what a record's config may hold)."""
    params = inspect.signature(LightMedSeg.__init__).parameters
    return [n for n in params if n not in ("self", "input_channels", "num_classes")]


def _check_record(record: Any, source: str) -> Dict[str, Any]:
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise NetworkConfigError(f"{source}: the '{KEY}' entry is not a network record (a dict with a 'config' "
                                 f"dict); it was edited or written by something else. Restore it from the "
                                 f"checkpoint (torch.load(...)['{KEY}']) or remove the entry to use the trainer's "
                                 f"defaults.")
    if record.get("network", "LightMedSeg") != "LightMedSeg":
        raise NetworkConfigError(f"{source}: the record describes a {record['network']!r} network, not LightMedSeg.")
    known = set(constructor_options())
    unknown = sorted(set(record["config"]) - known)
    if unknown:
        version = record.get("plugin_version", "?")
        raise NetworkConfigError(
            f"{source}: this model was trained with nnunetv2-lightmedseg {version}, whose network has option(s) "
            f"{', '.join(unknown)} that the installed version ({plugin_version()}) does not know. Install the "
            f"version the model was trained with or a newer one (pip install 'nnunetv2-lightmedseg>={version}').")
    return record


def build_from_record(record: Mapping[str, Any], input_channels: int, num_classes: int,
                      source: str) -> LightMedSeg:
    """``LightMedSeg(input_channels, num_classes, **record['config'])``; NetworkConfigError if unusable."""
    record = _check_record(record, source)
    try:
        return LightMedSeg(input_channels, num_classes, **record["config"])
    except (TypeError, ValueError) as e:
        raise NetworkConfigError(f"{source}: the stored network configuration {record['config']} cannot be built "
                                 f"with the installed nnunetv2-lightmedseg {plugin_version()}: {e}") from None


def differences(stored: Mapping[str, Any], built: Mapping[str, Any]) -> List[str]:
    """``name: stored value -> built value`` for every option that differs (absent options included)."""
    a, b = jsonable(stored), jsonable(built)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "(absent)") != b.get(k, "(absent)"):
            out.append(f"{k}: {a.get(k, '(absent)')!r} (stored) vs {b.get(k, '(absent)')!r} (built)")
    return out


def record_differences(stored: Mapping[str, Any], built: Mapping[str, Any]) -> List[str]:
    """Every field in which two network records differ: each option of ``config`` and the channel counts
    (``input_channels``, ``num_classes``), in :func:`differences`' wording."""
    diff = differences(stored.get("config", {}), built.get("config", {}))
    for name in ("input_channels", "num_classes"):
        if name in stored or name in built:
            a, b = stored.get(name, "(absent)"), built.get(name, "(absent)")
            if a != b:
                diff.append(f"{name}: {a!r} (stored) vs {b!r} (built)")
    return diff


def check_matches(record: Mapping[str, Any], network: nn.Module, source: str) -> None:
    """Refuse (NetworkConfigError naming the differences) when ``network`` is not the one ``record`` describes."""
    record = _check_record(record, source)
    net = unwrap(network)
    diff = record_differences(record, {"config": getattr(net, "config", {}),
                                       "input_channels": int(getattr(net, "input_channels")),
                                       "num_classes": int(getattr(net, "num_classes"))})
    if diff:
        raise NetworkConfigError(
            f"{source} was trained with a different LightMedSeg network than the one built to load it into:\n  "
            + "\n  ".join(diff) + f"\nBuild the network from the stored configuration "
            f"(LightMedSeg(in, out, **record['config']), record = torch.load(...)['{KEY}']), or use the trainer "
            f"variant that has these options.")

