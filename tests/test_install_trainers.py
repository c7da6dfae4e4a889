"""``lightmedseg install-trainers``: nnU-Net finds the trainers by name without nnUNet_extTrainer, in a new
process, after the command; ``--check`` / ``--uninstall``; a foreign file is never overwritten or removed.

Runs against a private copy of nnU-Net (first on PYTHONPATH), so the shared environment is never changed."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import BIN

FIND = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
        "import nnunetv2_lightmedseg.training as tr\n"
        "for name in ('nnUNetTrainer_LightMedSeg', 'nnUNetTrainer_LightMedSeg_Smoke', 'nnUNetTrainer_5epochs'):\n"
        "    c = f(name)\n"
        "    print(name, c.__module__, c is getattr(tr, name, c))\n")


@pytest.fixture(scope="module")
def nnunet_copy(tmp_path_factory):
    import nnunetv2

    site = tmp_path_factory.mktemp("site")
    # without a registration module the shared environment may hold (this test installs its own)
    shutil.copytree(Path(nnunetv2.__file__).parent, site / "nnunetv2",
                    ignore=shutil.ignore_patterns("__pycache__", "nnunetv2_lightmedseg_trainers.py"))
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    shim = site / "nnunetv2" / "training" / "nnUNetTrainer" / "variants" / "nnunetv2_lightmedseg_trainers.py"
    return env, shim


def run(args, env):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def test_install_check_uninstall_in_process(tmp_path, monkeypatch):
    """The registration logic without new processes (the slow tests below run it through nnU-Net's lookup):
    install writes the module, is idempotent, and uninstall removes it; a foreign file is never touched; the
    module answers exactly the package's trainer names, as the package's own classes."""
    import importlib.util

    from nnunetv2_lightmedseg import registration as reg
    from nnunetv2_lightmedseg.training import ALL_TRAINERS

    shim = tmp_path / reg.SHIM_NAME
    monkeypatch.setattr(reg, "shim_path", lambda: shim)
    assert reg.installed() is None and reg.uninstall() is None
    assert reg.install() == shim and reg.installed() == shim and reg.install() == shim
    spec = importlib.util.spec_from_file_location("lms_shim", shim)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert all(getattr(module, name) is cls for name, cls in ALL_TRAINERS.items())
    for name in ("nnUNetTrainer_5epochs", "nnUNetTrainer_LightMedSeg_Nope", "something_else"):
        with pytest.raises(AttributeError):
            getattr(module, name)
    assert reg.uninstall() == shim and not shim.exists() and reg.installed() is None
    shim.write_text("# somebody else's module\n")
    for action in (reg.install, reg.uninstall):
        with pytest.raises(reg.RegistrationError, match="not written by `lightmedseg install-trainers`"):
            action()
    assert shim.read_text() == "# somebody else's module\n" and reg.installed() is None


@pytest.mark.slow
def test_install_check_uninstall(nnunet_copy):
    env, shim = nnunet_copy
    lms = str(BIN / "lightmedseg")
    assert run([lms, "install-trainers", "--check"], env).returncode == 1
    p = run([sys.executable, "-c", FIND], env)
    assert p.returncode != 0 and "Could not find requested nnunet trainer nnUNetTrainer_LightMedSeg" in p.stderr

    p = run([lms, "install-trainers"], env)
    assert p.returncode == 0 and str(shim) in p.stdout and shim.is_file()
    assert run([lms, "install-trainers", "--check"], env).returncode == 0
    p = run([sys.executable, "-c", FIND], env)  # a new process, no nnUNet_extTrainer
    assert p.returncode == 0, p.stderr[-3000:]
    assert "nnUNetTrainer_LightMedSeg nnunetv2_lightmedseg.training.trainer True" in p.stdout
    assert "nnUNetTrainer_LightMedSeg_Smoke nnunetv2_lightmedseg.training.variants True" in p.stdout
    assert "nnUNetTrainer_5epochs nnunetv2.training.nnUNetTrainer.variants" in p.stdout  # stock lookups unaffected
    assert run([lms, "install-trainers"], env).returncode == 0  # idempotent

    p = run([lms, "install-trainers", "--uninstall"], env)
    assert p.returncode == 0 and not shim.exists()
    assert run([sys.executable, "-c", FIND], env).returncode != 0


@pytest.mark.slow
def test_foreign_file_is_left_alone(nnunet_copy):
    env, shim = nnunet_copy
    shim.write_text("# somebody else's module\n")
    try:
        for args in (["install-trainers"], ["install-trainers", "--uninstall"]):
            p = run([str(BIN / "lightmedseg"), *args], env)
            assert p.returncode == 2 and "was not written by `lightmedseg install-trainers`" in p.stderr
            assert shim.read_text() == "# somebody else's module\n"
    finally:
        shim.unlink()


@pytest.mark.slow
def test_uninstalled_plugin_does_not_break_nnunet(nnunet_copy, tmp_path):
    """The registration module of a plugin that was uninstalled answers no names; stock lookups still work."""
    env, shim = nnunet_copy
    from nnunetv2_lightmedseg.registration import SHIM_SOURCE

    shim.write_text(SHIM_SOURCE)
    try:
        blocker = tmp_path / "blocker"
        (blocker / "nnunetv2_lightmedseg").mkdir(parents=True)  # shadow the package with one that fails to import
        (blocker / "nnunetv2_lightmedseg" / "__init__.py").write_text("raise ModuleNotFoundError("
                                                                      "name='nnunetv2_lightmedseg')\n")
        env2 = dict(env, PYTHONPATH=os.pathsep.join([str(blocker), env["PYTHONPATH"]]))
        code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
                "print(f('nnUNetTrainer_5epochs').__name__)")
        p = run([sys.executable, "-c", code], env2)
        assert p.returncode == 0 and "nnUNetTrainer_5epochs" in p.stdout, p.stderr[-2000:]
    finally:
        shim.unlink()
