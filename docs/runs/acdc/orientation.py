"""In-plane orientation of the ACDC volumes and the Dice of each orientation group.

The shared ACDC volumes come in two in-plane orientations (the source converted some stacks with their in-plane axes
swapped): measured on the reference labels of the middle slice range, the direction from the LV centroid to the RV
centroid (array axes 0 -> 1 of the NIfTI) is +130..+180 degrees ("A", the short axis first) for most volumes and
-105..-165 degrees ("B", about 75-90 degrees further round) for 13 of the 70 patients. Group B is a rotation of A,
not a mirror image: the direction from the LV to the body's centroid turns by the same angle, so the handedness
(sign of the cross product of the two directions) is the same in both groups.

    python docs/runs/acdc/orientation.py                     # the table of volumes (raw labels)
    python docs/runs/acdc/orientation.py <result folder>...  # mean Dice per group of each run's final validation
"""
import glob
import json
import os
import sys

import numpy as np

RAW = os.path.join(os.environ.get("nnUNet_raw", ""), "Dataset027_ACDC")


def orientation(label_file: str) -> dict:
    """RV and body directions (degrees) from the LV centroid, the handedness and the group of one volume."""
    import nibabel as nib  # deferred: nnU-Net's class finder imports this module

    lab = np.asarray(nib.load(label_file).dataobj)
    img = np.asarray(nib.load(label_file.replace("labelsTr", "imagesTr").replace(".nii.gz", "_0000.nii.gz")).dataobj)
    rv, lv = np.argwhere(lab == 1)[:, :2].mean(0), np.argwhere(lab == 3)[:, :2].mean(0)
    mid = img[:, :, img.shape[2] // 2].astype(float)
    body = np.argwhere(mid > np.percentile(mid, 60)).mean(0)
    d1, d2 = rv - lv, body - lv
    rv_angle = float(np.degrees(np.arctan2(d1[1], d1[0])))
    return {"rv_angle": rv_angle, "body_angle": float(np.degrees(np.arctan2(d2[1], d2[0]))),
            "handedness": int(np.sign(d1[0] * d2[1] - d1[1] * d2[0])),
            "group": "B" if -170 < rv_angle < -100 else "A"}


def groups() -> dict:
    """``{patient id: group}`` from each patient's first frame."""
    out = {}
    for f in sorted(glob.glob(os.path.join(RAW, "labelsTr", "*.nii.gz"))):
        pid = os.path.basename(f).split("_frame")[0]
        if pid not in out:
            out[pid] = orientation(f)["group"]
    return out


def main(folders) -> None:
    if not folders:
        for f in sorted(glob.glob(os.path.join(RAW, "labelsTr", "*.nii.gz"))):
            o = orientation(f)
            print(f"{os.path.basename(f)[:-7]:20s} group {o['group']}  LV->RV {o['rv_angle']:7.1f}  "
                  f"LV->body {o['body_angle']:7.1f}  handedness {o['handedness']:+d}")
        return
    g = groups()
    for folder in folders:
        s = json.load(open(glob.glob(os.path.join(folder, "fold_*", "validation", "summary.json"))[0]))
        per = {"A": [], "B": []}
        for case in s["metric_per_case"]:
            pid = os.path.basename(case["reference_file"]).split("_frame")[0]
            per[g[pid]].append([case["metrics"][k]["Dice"] for k in ("1", "2", "3")])
        cells = []
        for k, v in per.items():
            v = np.array(v)
            cells.append(f"{k} ({len(v)} vol.) {v.mean():.3f} (RV {v[:, 0].mean():.3f} / MYO {v[:, 1].mean():.3f} / "
                         f"LV {v[:, 2].mean():.3f})")
        print(f"{os.path.basename(folder.rstrip('/'))}: " + "; ".join(cells))


if __name__ == "__main__":  # nnU-Net's class finder imports every module of this folder
    main(sys.argv[1:])
