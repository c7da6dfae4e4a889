"""A wheel built from a clean checkout works when installed, non-editable, into a fresh virtual environment.

The wheel is built with ``python -m build --wheel --no-isolation`` from a copy of the checkout in a temporary
folder: the files git tracks and the new files it does not ignore, as they are in the working tree (in a clean
clone, exactly the clone), so nothing ignored or generated (``build/``, ``*.egg-info``, ``.venv``) can slip in. The fresh venv gets the wheel with
``pip install --no-deps`` and finds the dependencies (torch, nnU-Net, ...) through a ``.pth`` line naming this
environment's site-packages, so nothing is downloaded. nnU-Net itself is a private copy inside the fresh venv, so
``lightmedseg install-trainers`` writes there and the shared environment is never changed. Every command runs from
a folder outside the repository with a minimal environment, so the checkout cannot be imported by accident.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers import preprocessed_json_copy, REPO, TINY_NAME, tiny_preprocessed_dataset

pytestmark = pytest.mark.slow

SHIM = "nnunetv2_lightmedseg_trainers.py"  # registration.SHIM_NAME, spelled out: the test must not need the repo


def run(args, cwd, env, timeout=300):
    p = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """(venv bin folder, its site-packages, a minimal environment for it, a work folder outside the repo)."""
    import nnunetv2

    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():  # a tracked file deleted in the working tree is not part of the checkout
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist"], src, dict(os.environ))
    (wheel,) = (tmp / "dist").glob("nnunetv2_lightmedseg-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies_of_the_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.copytree(Path(nnunetv2.__file__).parent, site / "nnunetv2",
                    ignore=shutil.ignore_patterns("__pycache__", SHIM))
    run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "--quiet", wheel],
        tmp, dict(os.environ))
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp),
           "PYTHONNOUSERSITE": "1", "LC_ALL": "C.UTF-8"}
    work = tmp / "elsewhere"
    work.mkdir()
    return venv / "bin", site, env, work


def test_installed_package_is_the_wheels(wheel_venv):
    bin_dir, site, env, work = wheel_venv
    out = run(["python", "-c", "import nnunetv2, nnunetv2_lightmedseg as p; print(p.__file__); "
                               "print(nnunetv2.__file__)"], work, env)
    package, nnunet = out.split()
    assert Path(package).is_relative_to(site) and Path(nnunet).is_relative_to(site)
    assert not (site / "nnunetv2_lightmedseg" / "__init__.py").is_symlink()
    from nnunetv2_lightmedseg import __version__
    assert run(["lightmedseg", "--version"], work, env).strip() == f"nnunetv2-lightmedseg {__version__}"
    assert Path(run(["which", "lightmedseg"], work, env).strip()).parent == bin_dir


def test_install_trainers_then_nnunet_finds_the_trainer(wheel_venv):
    _, site, env, work = wheel_venv
    p = subprocess.run(["lightmedseg", "install-trainers", "--check"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 1 and "not registered" in p.stdout
    assert str(site / "nnunetv2") in run(["lightmedseg", "install-trainers"], work, env)
    assert "registered:" in run(["lightmedseg", "install-trainers", "--check"], work, env)
    find = ("import sys\nfrom nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
            "c = f('nnUNetTrainer_LightMedSeg_Smoke')\nprint(c.__name__, sys.modules[c.__module__].__file__)")
    name, module_file = run(["python", "-c", find], work, env).split()  # nnUNetv2_train's lookup, new process
    assert name == "nnUNetTrainer_LightMedSeg_Smoke" and Path(module_file).is_relative_to(site)


def test_plans_override_from_the_wheel(wheel_venv, tmp_path):
    """`lightmedseg plans` of the installed wheel writes the configurations the repository's plans_overrides/ show."""
    _, _, env, work = wheel_venv
    dst = preprocessed_json_copy(tmp_path)
    run(["lightmedseg", "plans", "-d", "990", "--variant", "paper"], work,
        dict(env, nnUNet_preprocessed=str(tmp_path / "preprocessed")))
    written = json.loads((dst / "nnUNetPlans.json").read_text())["configurations"]
    shipped = json.loads((REPO / "plans_overrides" / "3d_fullres_lightmedseg.json").read_text())
    assert {k: written[k] for k in shipped} == shipped
