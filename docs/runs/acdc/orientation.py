"""In-plane orientation of the ACDC volumes and the Dice of each orientation group.

The hearts of the shared ACDC volumes lie in different in-plane orientations. Two directions from the LV centroid
(reference labels; array axes 0 and 1 of the NIfTI) measure it: to the RV centroid, and to the centroid of the
brightest 40 % of the middle slice (the body). Their circular mean (the body direction turned by the 110 degrees
that separate the two on average) is the heart's orientation: 115..180 and -180..-169 degrees for most patients
("A"), -165..-105 degrees for 12 of the 70 ("B", the far end, ~75-90 degrees from A's centre; 11 of them stored with
more rows than columns). B is a rotation of A, not a mirror image: the handedness (sign of the cross product of the
two directions) is the same for 135 of the 140 volumes.

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
    body_angle = float(np.degrees(np.arctan2(d2[1], d2[0])))
    heart = float(np.degrees(np.angle(np.exp(1j * np.radians(rv_angle)) + np.exp(1j * np.radians(body_angle + 110)))))
    return {"rv_angle": rv_angle, "body_angle": body_angle, "heart_angle": heart,
            "handedness": int(np.sign(d1[0] * d2[1] - d1[1] * d2[0])), "group": "B" if -165 < heart < -90 else "A"}


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
            print(f"{os.path.basename(f)[:-7]:20s} group {o['group']}  heart {o['heart_angle']:7.1f}  LV->RV "
                  f"{o['rv_angle']:7.1f}  LV->body {o['body_angle']:7.1f}  handedness {o['handedness']:+d}")
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
