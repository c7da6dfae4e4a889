"""``lightmedseg explain``: PNGs written, non-empty, expected names; anchors inside the image grid."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nnunetv2_lightmedseg.deploy.explain import (ExplainError, anchor_voxels, center_crop_or_pad, channel_files,
                                                 choose_slices)

FIGURES = ("anchors", "lspm", "skip_router", "decoder_paths", "prediction")


def _check_outputs(out, case, figures=FIGURES):
    from PIL import Image

    for name in figures:
        png = out / f"{case}_{name}.png"
        assert png.is_file(), f"missing {png.name}; have {sorted(p.name for p in out.iterdir())}"
        with Image.open(png) as im:
            w, h = im.size
            arr = np.asarray(im.convert("L"))
        assert w > 400 and h > 300, (png.name, im.size)
        assert arr.std() > 10, f"{png.name} looks blank"
    summary = json.loads((out / f"{case}_explain.json").read_text())
    grid = summary["grid"]
    if "anchors" in figures:
        vox = np.array(summary["anchors_voxel"])
        assert vox.shape[1] == 3 and len(vox) >= 1
        assert (vox >= -0.5).all() and (vox <= np.array(grid) - 0.5).all(), (vox, grid)
    assert all(0 <= s < g for s, g in zip(summary["slices"], grid))
    return summary


def test_anchor_voxel_mapping_matches_position_bias():
    # the position bias puts voxel i's centre at (i + 0.5) / L: anchor 0.5 on L = 32 is between voxels 15 and 16
    vox = anchor_voxels(np.array([[0.5, 0.0, 1.0]]), [32, 32, 32])
    assert np.allclose(vox, [[15.5, -0.5, 31.5]])


def test_center_crop_or_pad():
    data = np.arange(2 * 10 * 20 * 5, dtype=np.float32).reshape(2, 10, 20, 5)
    patch, starts = center_crop_or_pad(data, (6, 16, 9))
    assert patch.shape == (2, 6, 16, 9) and starts == [2, 2, -2]
    assert np.array_equal(patch[:, :, :, 2:7], data[:, 2:8, 2:18, :])
    assert not patch[:, :, :, :2].any() and not patch[:, :, :, 7:].any()


def test_choose_slices_follows_foreground():
    seg = np.zeros((20, 30, 40), np.int16)
    seg[5:8, 20:23, 30:33] = 1
    assert choose_slices(seg) == [6, 21, 31]
    assert choose_slices(np.zeros((20, 30, 40))) == [10, 15, 20]


def test_channel_files_finds_the_other_channels_as_nnunet_does(tmp_path, monkeypatch):
    for c in (0, 1, 2):
        (tmp_path / f"case_{c:04d}.nii.gz").write_bytes(b"")
    (tmp_path / "case_b_0001.nii.gz").write_bytes(b"")  # another case: not a channel of "case"
    first = str(tmp_path / "case_0000.nii.gz")
    assert channel_files([first], 2) == [first, str(tmp_path / "case_0001.nii.gz")]
    monkeypatch.chdir(tmp_path)
    assert channel_files(["case_0000.nii.gz"], 3) == [f"case_{c:04d}.nii.gz" for c in range(3)]
    with pytest.raises(ExplainError, match="expects 4 channels but .*case_0003.nii.gz is missing"):
        channel_files([first], 4)
    with pytest.raises(ExplainError, match="name the first CASE_0000"):
        channel_files([str(tmp_path / "case_0001.nii.gz")], 2)


@pytest.mark.slow  # the generated phantom is 64^3
def test_explain_demo_generated(tmp_path):
    from nnunetv2_lightmedseg.cli.main import main
    rc = main(["explain", "-o", str(tmp_path), "--num-classes", "3"])
    assert rc == 0
    s = _check_outputs(tmp_path, "generated_phantom")
    assert len(s["anchors_voxel"]) == 8 and s["input_shape"] == [1, 64, 64, 64]


@pytest.mark.slow
def test_explain_trained_model(tmp_path):
    from tiny_model import CONFIG, FOLD, TINY_ID, TRAINER, tiny_case_image, trained_model_results
    from nnunetv2_lightmedseg.cli.main import main

    trained_model_results()
    rc = main(["explain", "-d", str(TINY_ID), "-c", CONFIG, "-f", str(FOLD), "-tr", TRAINER,
               "-i", str(tiny_case_image()), "-o", str(tmp_path)])
    assert rc == 0
    s = _check_outputs(tmp_path, "case000")
    plans = json.loads((trained_model_results() / f"Dataset{TINY_ID:03d}_LMSBlobs" /
                        f"{TRAINER}__nnUNetPlans__{CONFIG}" / "plans.json").read_text())
    assert s["input_shape"][1:] == plans["configurations"][CONFIG]["patch_size"]
    assert all(g % 16 == 0 for g in s["grid"])


def test_explain_clear_errors(tmp_path, capsys):
    from nnunetv2_lightmedseg.cli.main import main
    rc = main(["explain", "-i", str(tmp_path / "missing_0000.nii.gz"), "-o", str(tmp_path)])
    assert rc == 2 and "not found" in capsys.readouterr().err
