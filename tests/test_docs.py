"""The user documents: a README a newcomer reads in one minute, links that resolve, decisions that docstrings link.

README.md: at most 120 lines, the two set-up commands within its first 40, no commit hash (commits live with the
figures in docs/results.md and docs/decisions.md), no install line for an index the package is not on. Every
relative link of the README and docs/*.md points to a file that exists, every ``#anchor`` to a heading of the
target, and every ``docs/decisions.md#anchor`` the package or the docs name is a section of docs/decisions.md.
"""
import re
from pathlib import Path

import pytest

from helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "docs" / "lab" / "benchmarks.md"]
COMMIT = re.compile(r"\b[0-9a-f]{7,40}\b")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", path.read_text(), re.M)}


def test_readme_is_short_and_starts_with_the_set_up():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 120
    head = "\n".join(lines[:40])
    assert "bash run_demo.sh" in head and "bash run_tests.sh" in head and "source .venv/bin/activate" in head
    hashes = [h for h in COMMIT.findall("\n".join(lines)) if re.search(r"[a-f]", h) and re.search(r"\d", h)]
    assert not hashes, hashes


def test_no_document_claims_a_package_index_install():
    for path in DOCS + [REPO / "plans_overrides" / "README.md"]:
        assert "pip install nnunetv2-lightmedseg" not in path.read_text(), path


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: link to {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{path.name}: no heading for #{anchor} in {dest.name}"


def test_every_decision_link_names_a_section():
    sections = anchors(REPO / "docs" / "decisions.md")
    sources = [*(REPO / "nnunetv2_lightmedseg").rglob("*.py"), *DOCS]
    linked = {m for p in sources for m in re.findall(r"decisions\.md#([\w-]+)", p.read_text())}
    assert linked, "nothing links docs/decisions.md"
    assert linked <= sections, sorted(linked - sections)


def test_run_folders_import_quietly_as_nnunet_trainer_folders():
    """Each docs/runs folder with trainers is an ``nnUNet_extTrainer`` folder, and nnU-Net's class finder imports
    every module in it: a script there must not run (or fail) on import, or ``nnUNetv2_train`` stops."""
    import os
    import subprocess
    import sys

    scripts = sorted((REPO / "docs" / "runs").glob("*/*.py"))
    assert any(p.name == "study_trainers.py" for p in scripts)
    code = ("import importlib.util, sys\nsys.argv = ['nnUNetv2_train']\n"  # as under nnU-Net: no script arguments
            "for i, path in enumerate(%r):\n"
            "    spec = importlib.util.spec_from_file_location(f'runs_module_{i}', path)\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n") % [str(p) for p in scripts]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "", f"a module under docs/runs prints on import: {done.stdout[:500]!r}"
