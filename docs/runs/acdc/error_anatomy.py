"""Per-case error anatomy of an ACDC validation folder (nnU-Net's fold_x/validation): per class Dice, predicted /
reference volume, the fraction of predicted voxels farther than 5 in-plane voxels from every reference structure
("far": false positives away from the heart) and the number of connected components.

    python docs/runs/acdc/error_anatomy.py $nnUNet_results/Dataset027_ACDC/<trainer>__nnUNetPlans__3d_fullres/fold_0/validation
"""
import sys, glob, os
import numpy as np, SimpleITK as sitk
from scipy import ndimage
def main(val: str) -> None:
    gt = os.path.join(os.environ["nnUNet_preprocessed"], "Dataset027_ACDC", "gt_segmentations")
    rows = []
    for f in sorted(glob.glob(os.path.join(val, "*.nii.gz"))):
        p = sitk.GetArrayFromImage(sitk.ReadImage(f)); r = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(gt, os.path.basename(f))))
        heart = ndimage.binary_dilation(r > 0, iterations=5, structure=np.ones((1,3,3)))
        row = []
        for c in (1, 2, 3):
            a, b = p == c, r == c
            d = 2 * (a & b).sum() / max(1, a.sum() + b.sum())
            far = (a & ~heart).sum() / max(1, a.sum())
            ncomp = ndimage.label(a)[1]
            row += [d, a.sum() / max(1, b.sum()), far, ncomp]
        rows.append(row); print(os.path.basename(f)[:-7], " ".join(f"{x:6.2f}" for x in row))
    m = np.array(rows).mean(0)
    print("mean: " + "  |  ".join(f"{n}: dice {m[4*i]:.3f} vol {m[4*i+1]:.2f} far {m[4*i+2]:.3f} comps {m[4*i+3]:.1f}" for i, n in enumerate(("RV", "MYO", "LV"))))


if __name__ == "__main__":  # nnU-Net's class finder imports every module of this folder
    main(sys.argv[1])
