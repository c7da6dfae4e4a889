"""Synthetic 3D datasets in nnU-Net v2's raw layout, for ``lightmedseg demo`` and the end-to-end tests.

Each case is a small volume (default 32 x 48 x 40 voxels at 1.5 mm) holding nested ellipsoids at a random
position, size and orientation. What makes the structures learnable, yet not a single threshold away:

* every class has its own intensity mean AND its own texture (oriented stripes, speckle, smooth background
  field), so intensity and texture both carry information, as in MRI;
* the image boundaries are soft (partial-volume blur) while the labels are hard, so the net has to place the
  boundary, which is what the boundary term of the loss (paper §3.7) is about;
* a smooth multiplicative bias field and Gaussian noise vary per case, so a global threshold is not enough
  (nnU-Net's z-score normalisation removes the global scale but not the field).

Two kinds, matching the two target kinds nnU-Net (and LightMedSeg's loss) handles:

``write_label_dataset``
    one MRI-like channel; labels ``background`` 0, ``outer`` 1, ``inner`` 2 (softmax, label-based);
``write_region_dataset``
    BraTS-like: 2-4 channels (T1, T1ce, T2, FLAIR), labels 1 edema, 2 necrotic/non-enhancing core,
    3 enhancing ring, trained as nnU-Net's nested regions ``whole tumor`` (1,2,3), ``tumor core`` (2,3),
    ``enhancing tumor`` (3) with ``regions_class_order`` (1, 2, 3), exactly the convention of nnU-Net's
    ``Dataset137_BraTS21`` conversion script;
``write_thick_slice_dataset``
    cine-MRI-like thick slices (ACDC): few slices far apart (default 10 slices of 64 x 56 pixels at
    8 mm x 1.25 mm x 1.25 mm), labels ``RV`` 1, ``MYO`` 2, ``LV`` 3. The structures change from slice to slice
    as a heart's short-axis stack does: the left ventricle is a tilted, truncated ellipsoid (its cross-section
    shrinks towards the apex and drifts in-plane), the myocardium a wall around it, the right ventricle a
    crescent beside it that ends above the apex. nnU-Net plans such data with in-plane poolings and
    ``[1, 3, 3]`` kernels first, which is what LightMedSeg's plans-aware schedule is tested on.

Training cases go to ``imagesTr``/``labelsTr``; held-out cases to ``imagesTs`` and, for evaluation,
``labelsTs`` (not part of nnU-Net's layout, which ignores it; ``lightmedseg demo`` evaluates against it).
``dataset.json`` is written with nnU-Net's own ``generate_dataset_json``. Everything is deterministic given the
seed: case ``i`` draws from ``numpy.random.default_rng([seed, i])``, independent of how many cases are written.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.ndimage import gaussian_filter

from ..utils.names import dataset_folder_name

Shape = Tuple[int, int, int]

DEFAULT_SHAPE: Shape = (32, 48, 40)  # z, y, x (numpy / SimpleITK array order)
DEFAULT_SPACING: Tuple[float, float, float] = (1.5, 1.5, 1.5)  # mm, (x, y, z) as SimpleITK wants it

#: BraTS modality order of nnU-Net's Dataset137 conversion; fewer channels keep the most informative ones
#: (FLAIR shows the whole tumour, T1ce the enhancing ring; T1 shows the core dark, T2 adds little more)
REGION_CHANNELS = {
    2: ("T1ce", "FLAIR"),
    3: ("T1", "T1ce", "FLAIR"),
    4: ("T1", "T1ce", "T2", "FLAIR"),
}


# ----------------------------------------------------------------------------------------------- primitives
def _grid(shape: Shape) -> np.ndarray:
    """Voxel coordinates, shape (3, *shape), float32."""
    return np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.astype(np.float32)


def _ellipsoid_distance(grid: np.ndarray, center: np.ndarray, radii: np.ndarray,
                        rotation: np.ndarray) -> np.ndarray:
    """Approximate signed distance (voxels) to an ellipsoid surface: < 0 inside, > 0 outside.

    ``(|R^T (x - c) / r| - 1) * min(r)`` is exact for spheres and close enough for mild ellipsoids; it only
    feeds the hard label (sign) and the soft partial-volume edge (a few voxels wide).
    """
    d = grid - center.reshape(3, 1, 1, 1)
    local = np.einsum("ij,i...->j...", rotation, d) / radii.reshape(3, 1, 1, 1)
    return (np.sqrt((local ** 2).sum(0)) - 1.0) * float(radii.min())


def _soft(distance: np.ndarray, width: float = 0.8) -> np.ndarray:
    """Partial-volume occupancy in [0, 1] from a signed distance (a logistic edge ~2 voxels wide)."""
    return 1.0 / (1.0 + np.exp(distance / width))


def _smooth_noise(rng: np.random.Generator, shape: Shape, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise: a texture whose grain size is ~sigma voxels."""
    n = gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return (n - n.mean()) / (n.std() + 1e-8)


def _stripes(rng: np.random.Generator, grid: np.ndarray, period: float) -> np.ndarray:
    """Oriented sinusoidal stripes with a random direction and phase (a directional texture)."""
    direction = rng.normal(size=3).astype(np.float32)
    direction /= np.linalg.norm(direction)
    phase = rng.uniform(0, 2 * np.pi)
    return np.sin(2 * np.pi * np.einsum("i,i...->...", direction, grid) / period + phase).astype(np.float32)


def _bias_field(rng: np.random.Generator, grid: np.ndarray, shape: Shape, strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(sum of random linear and quadratic terms), like MRI's B1 inhomogeneity."""
    u = [(grid[i] / (shape[i] - 1)) * 2 - 1 for i in range(3)]  # each axis in [-1, 1]
    terms = u + [u[0] * u[1], u[1] * u[2], u[0] * u[2], u[0] ** 2, u[1] ** 2, u[2] ** 2]
    coefficients = rng.normal(scale=strength / 2, size=len(terms))
    return np.exp(sum(c * t for c, t in zip(coefficients, terms))).astype(np.float32)


@dataclass
class _NestedEllipsoids:
    """An outer ellipsoid with a smaller inner one inside it, both randomly oriented."""
    outer: np.ndarray  # signed distance to the outer surface
    inner: np.ndarray  # signed distance to the inner surface


def _nested_ellipsoids(rng: np.random.Generator, grid: np.ndarray, shape: Shape) -> _NestedEllipsoids:
    size = np.array(shape, dtype=np.float32)
    # outer radii 22-40% of the smallest axis (e.g. 7-13 voxels for 32): big enough for the 16x-downsampled
    # bottleneck of LightMedSeg to see it, small enough to leave background all around
    radii = rng.uniform(0.22, 0.40, size=3).astype(np.float32) * size.min()
    margin = radii.max() + 2
    center = np.array([rng.uniform(margin, s - margin) if s > 2 * margin else s / 2 for s in size],
                      dtype=np.float32)
    rotation = _random_rotation(rng)
    outer = _ellipsoid_distance(grid, center, radii, rotation)
    # inner: 40-60% of the outer radii, shifted off-centre by up to 25% of the outer radii (stays inside)
    inner_radii = radii * rng.uniform(0.4, 0.6, size=3).astype(np.float32)
    shift = (rng.uniform(-0.25, 0.25, size=3) * radii).astype(np.float32)
    inner_center = center + rotation @ shift
    inner = _ellipsoid_distance(grid, inner_center, inner_radii, _random_rotation(rng))
    # keep the inner structure strictly inside the outer one (labels must nest)
    inner = np.maximum(inner, outer + 1.0)
    return _NestedEllipsoids(outer, inner)


# ------------------------------------------------------------------------------------------------ cases
def label_case(rng: np.random.Generator, shape: Shape = DEFAULT_SHAPE) -> Tuple[np.ndarray, np.ndarray]:
    """One label-based case: image (1, *shape) float32 and labels (*shape) uint8 in {0: bg, 1: outer, 2: inner}.

    Background: mean 0.0 with a coarse smooth texture. Outer: mean 1.0 with oriented stripes (period ~4 voxels).
    Inner: mean 1.8 with a fine speckle. Soft edges, bias field (+-20%) and noise (std 0.25) on top.
    """
    grid = _grid(shape)
    e = _nested_ellipsoids(rng, grid, shape)
    o, i = _soft(e.outer), _soft(e.inner)
    background = 0.25 * _smooth_noise(rng, shape, 3.0)
    outer = 1.0 + 0.35 * _stripes(rng, grid, rng.uniform(3.5, 5.0))
    inner = 1.8 + 0.3 * _smooth_noise(rng, shape, 0.7)
    image = (1 - o) * background + (o - i) * outer + i * inner
    image = image * _bias_field(rng, grid, shape, 0.2) + rng.normal(scale=0.25, size=shape)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[e.outer < 0] = 1
    labels[e.inner < 0] = 2
    return image[None].astype(np.float32), labels


def region_case(rng: np.random.Generator, shape: Shape = DEFAULT_SHAPE,
                num_channels: int = 4) -> Tuple[np.ndarray, np.ndarray]:
    """One BraTS-like case: image (C, *shape) float32, labels (*shape) uint8.

    Labels (nnU-Net's BraTS numbering): 1 edema (outer ellipsoid minus core), 3 enhancing tumour (a ring
    ~2 voxels thick inside the core's surface), 2 necrotic/non-enhancing core (the rest of the core). Each
    modality shows the regions the way the real ones roughly do: FLAIR bright over the whole tumour, T1ce
    bright on the enhancing ring, T1 dark in the core, T2 bright in edema and necrosis.
    """
    if num_channels not in REGION_CHANNELS:
        raise ValueError(f"num_channels must be one of {sorted(REGION_CHANNELS)}, got {num_channels}")
    grid = _grid(shape)
    e = _nested_ellipsoids(rng, grid, shape)
    ring_width = 2.0
    wt = _soft(e.outer)                       # whole tumour occupancy
    tc = _soft(e.inner)                       # tumour core occupancy
    nc = _soft(e.inner + ring_width)          # necrotic interior occupancy
    ed, et = wt - tc, tc - nc                 # edema, enhancing ring
    # per-modality intensity of (background, edema, enhancing, necrosis) and texture scale
    contrast = {
        "T1": (1.0, 0.8, 0.6, 0.3),
        "T1ce": (1.0, 0.9, 2.2, 0.4),
        "T2": (0.6, 1.6, 1.1, 1.9),
        "FLAIR": (0.5, 1.7, 1.5, 1.2),
    }
    bias = _bias_field(rng, grid, shape, 0.2)
    channels = []
    for name in REGION_CHANNELS[num_channels]:
        b, d, r, n = contrast[name]
        tissue = b + 0.15 * _smooth_noise(rng, shape, 2.5)       # brain-like background texture
        edema = d + 0.2 * _smooth_noise(rng, shape, 1.5)
        ring = r + 0.25 * _stripes(rng, grid, rng.uniform(3.0, 4.5))
        necrosis = n + 0.2 * _smooth_noise(rng, shape, 0.7)
        image = (1 - wt) * tissue + ed * edema + et * ring + nc * necrosis
        channels.append(image * bias + rng.normal(scale=0.2, size=shape))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[e.outer < 0] = 1
    labels[e.inner < 0] = 3
    labels[e.inner + ring_width < 0] = 2
    return np.stack(channels).astype(np.float32), labels


def thick_slice_case(rng: np.random.Generator, shape: Shape = (10, 64, 56),
                     spacing_zyx: Sequence[float] = (8.0, 1.25, 1.25)) -> Tuple[np.ndarray, np.ndarray]:
    """One cine-MRI-like short-axis stack: image (1, *shape) float32 and labels (*shape) uint8 in
    {0: background, 1: RV, 2: MYO, 3: LV}. ``spacing_zyx`` in mm, numpy axis order (thick slices on z).

    Geometry in millimetres (so it does not depend on the voxel grid): the LV blood pool is an ellipsoid whose
    long axis runs along z and is tilted (its in-plane centre drifts by up to 0.25 mm per mm of z, i.e. up to
    2 mm, about 1.6 pixels, from one 8 mm slice to the next); the myocardium is the shell between it and an ellipsoid 4-7 mm larger; the RV is an ellipsoid
    beside the LV, shorter and shifted towards the base, minus the LV's epicardium (a crescent). Intensities
    like bright-blood cine MRI: LV and RV blood bright (1.8 / 1.5) with slow flow texture, myocardium dark
    (0.6) with speckle, background tissue (0.35) with coarse texture; partial volume at edges (~1.5 mm
    in-plane), bias field and noise on top.
    """
    sz, sy, sx = (float(s) for s in spacing_zyx)
    grid = _grid(shape)
    zmm, ymm, xmm = grid[0] * sz, grid[1] * sy, grid[2] * sx
    extent = np.array(shape, dtype=np.float32) * np.array([sz, sy, sx], dtype=np.float32)
    # long axis: centre slice, half-length, tilt (in-plane drift per mm of z), in-plane centre
    zc = extent[0] * rng.uniform(0.4, 0.6)
    half_length = extent[0] * rng.uniform(0.35, 0.5)
    tilt = rng.uniform(-0.25, 0.25, size=2)
    r_lv = min(extent[1], extent[2]) * rng.uniform(0.12, 0.17)
    wall = rng.uniform(4.0, 7.0)
    r_rv = r_lv * rng.uniform(1.1, 1.4)
    margin = r_lv + wall + 2 * r_rv + 2
    cy = rng.uniform(margin * 0.6, extent[1] - margin * 0.6)
    cx = rng.uniform(margin, extent[2] - margin) if extent[2] > 2 * margin else extent[2] / 2
    side = rng.choice([-1.0, 1.0])  # RV left or right of the LV
    dz = zmm - zc
    py, px = ymm - (cy + tilt[0] * dz), xmm - (cx + tilt[1] * dz)  # in-plane offsets from the tilted axis
    ecc = rng.uniform(0.85, 1.15)  # in-plane eccentricity

    def ellipsoid(dy, dx, dzz, ry, rx, rz):  # ~signed distance in mm (exact for spheres)
        rmin = min(ry, rx, rz)
        return (np.sqrt((dy / ry) ** 2 + (dx / rx) ** 2 + (dzz / rz) ** 2) - 1.0) * rmin

    lv = ellipsoid(py, px, dz, r_lv * ecc, r_lv / ecc, half_length)
    epi = ellipsoid(py, px, dz, r_lv * ecc + wall, r_lv / ecc + wall, half_length + wall)
    rv_off = side * (r_lv + wall + 0.45 * r_rv)
    rv_dz = dz + half_length * 0.3  # shifted towards the base, shorter: absent near the apex
    rv = ellipsoid(py - 0.2 * r_rv, px - rv_off, rv_dz, r_rv * 1.3, r_rv * 0.8, half_length * 0.75)
    rv = np.maximum(rv, -epi)  # crescent: outside the epicardium
    edge = 1.5  # mm, partial-volume width in-plane
    o_lv, o_epi, o_rv = _soft(lv, edge / 2), _soft(epi, edge / 2), _soft(rv, edge / 2)
    anisotropic_sigma = (0.3, 2.5, 2.5)  # voxels: textures are in-plane patterns, nearly independent per slice
    background = 0.35 + 0.2 * _smooth_noise(rng, shape, anisotropic_sigma)
    lv_blood = 1.8 + 0.15 * _smooth_noise(rng, shape, (0.3, 3.0, 3.0))
    rv_blood = 1.5 + 0.15 * _smooth_noise(rng, shape, (0.3, 3.0, 3.0))
    myo = 0.6 + 0.15 * _smooth_noise(rng, shape, (0.3, 0.7, 0.7))
    myo_occ = np.clip(o_epi - o_lv, 0, 1)
    rv_occ = np.clip(o_rv * (1 - o_epi), 0, 1)
    bg_occ = np.clip(1 - o_epi - rv_occ, 0, 1)
    image = bg_occ * background + rv_occ * rv_blood + myo_occ * myo + o_lv * lv_blood
    image = image * _bias_field(rng, grid, shape, 0.2) + rng.normal(scale=0.15, size=shape)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[rv < 0] = 1
    labels[epi < 0] = 2
    labels[lv < 0] = 3
    return image[None].astype(np.float32), labels


# ----------------------------------------------------------------------------------------------- writing
def _write_case(folder: Path, case_id: str, image: np.ndarray, labels: Optional[np.ndarray],
                spacing: Sequence[float], images_sub: str, labels_sub: str) -> None:
    import SimpleITK as sitk

    def write(array: np.ndarray, path: Path) -> None:
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing([float(s) for s in spacing])
        sitk.WriteImage(itk, str(path), useCompression=True)

    for c in range(image.shape[0]):
        write(image[c], folder / images_sub / f"{case_id}_{c:04d}.nii.gz")
    if labels is not None:
        write(labels, folder / labels_sub / f"{case_id}.nii.gz")


def _prepare(raw_root: Path, folder_name: str, overwrite: bool) -> Path:
    folder = Path(raw_root) / folder_name
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
        shutil.rmtree(folder)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    return folder


def _write_dataset(raw_root: Path, folder_name: str, make_case, channel_names: Dict[int, str],
                   labels: Dict[str, object], num_train: int, num_test: int, spacing: Sequence[float],
                   seed: int, overwrite: bool, prefix: str, description: str,
                   regions_class_order: Optional[Tuple[int, ...]] = None) -> Path:
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    if num_train < 5:
        # nnU-Net's five-fold split needs at least 5 training cases
        raise ValueError(f"num_train must be >= 5 (nnU-Net splits training cases into 5 folds), got {num_train}")
    folder = _prepare(raw_root, folder_name, overwrite)
    for i in range(num_train + num_test):
        image, seg = make_case(np.random.default_rng([seed, i]))
        test = i >= num_train
        _write_case(folder, f"{prefix}_{i:03d}", image, seg, spacing,
                    "imagesTs" if test else "imagesTr", "labelsTs" if test else "labelsTr")
    extra = {"regions_class_order": regions_class_order} if regions_class_order else {}
    generate_dataset_json(str(folder), channel_names=channel_names, labels=labels, num_training_cases=num_train,
                          file_ending=".nii.gz", dataset_name=folder_name, description=description,
                          reference="generated by nnunetv2_lightmedseg.data.synthetic (seed %d)" % seed,
                          license="CC0 (synthetic)", converted_by="nnunetv2_lightmedseg", **extra)
    return folder


def write_label_dataset(raw_root: Path, dataset_id: int = 990, name: str = "LightMedSegSynthetic",
                        num_train: int = 20, num_test: int = 4, shape: Shape = DEFAULT_SHAPE,
                        spacing: Sequence[float] = DEFAULT_SPACING, seed: int = 0,
                        overwrite: bool = True) -> Path:
    """Write a label-based dataset (one channel; background/outer/inner) to ``raw_root/DatasetXXX_name``.

    Returns the dataset folder. ~0.1 s per case at the default shape.
    """
    folder_name = dataset_folder_name(dataset_id, name)
    return _write_dataset(
        raw_root, folder_name, lambda rng: label_case(rng, tuple(shape)), {0: "MRI"},
        {"background": 0, "outer": 1, "inner": 2}, num_train, num_test, spacing, seed, overwrite,
        prefix="synth", description="Nested textured ellipsoids (outer with stripes, inner with speckle), "
                                    "bias field and noise; label-based.")


def write_region_dataset(raw_root: Path, dataset_id: int = 991, name: str = "LightMedSegSyntheticBraTS",
                         num_channels: int = 4, num_train: int = 20, num_test: int = 4,
                         shape: Shape = DEFAULT_SHAPE, spacing: Sequence[float] = DEFAULT_SPACING,
                         seed: int = 0, overwrite: bool = True) -> Path:
    """Write a BraTS-like region-based dataset (2-4 channels, nested regions) to ``raw_root/DatasetXXX_name``.

    dataset.json follows nnU-Net's BraTS convention (``Dataset137_BraTS21``): region labels as tuples of the
    integer labels they contain and ``regions_class_order`` (1, 2, 3), so predictions are written back as the
    integer labels 1 edema, 2 non-enhancing core, 3 enhancing tumour.
    """
    folder_name = dataset_folder_name(dataset_id, name)
    if num_channels not in REGION_CHANNELS:
        raise ValueError(f"num_channels must be one of {sorted(REGION_CHANNELS)}, got {num_channels}")
    channel_names = dict(enumerate(REGION_CHANNELS[num_channels]))
    return _write_dataset(
        raw_root, folder_name, lambda rng: region_case(rng, tuple(shape), num_channels), channel_names,
        {"background": 0, "whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing tumor": (3,)},
        num_train, num_test, spacing, seed, overwrite, prefix="brats",
        description="BraTS-like nested tumour regions (edema, necrotic core, enhancing ring) in %d modalities; "
                    "region-based." % num_channels,
        regions_class_order=(1, 2, 3))


#: thick-slice defaults: 10 short-axis slices, 8 mm apart, 1.25 mm pixels (ACDC-like)
THICK_SLICE_SHAPE: Shape = (10, 64, 56)  # z, y, x
THICK_SLICE_SPACING: Tuple[float, float, float] = (1.25, 1.25, 8.0)  # mm, (x, y, z) as SimpleITK wants it


def write_thick_slice_dataset(raw_root: Path, dataset_id: int = 992, name: str = "LightMedSegSyntheticCine",
                              num_train: int = 20, num_test: int = 4, shape: Shape = THICK_SLICE_SHAPE,
                              spacing: Sequence[float] = THICK_SLICE_SPACING, seed: int = 0,
                              overwrite: bool = True) -> Path:
    """Write a cine-MRI-like thick-slice dataset (one channel; background/RV/MYO/LV, like ACDC) to
    ``raw_root/DatasetXXX_name``; ``spacing`` in SimpleITK's (x, y, z) order. Returns the dataset folder."""
    folder_name = dataset_folder_name(dataset_id, name)
    spacing_zyx = tuple(float(s) for s in reversed(tuple(spacing)))
    return _write_dataset(
        raw_root, folder_name, lambda rng: thick_slice_case(rng, tuple(shape), spacing_zyx), {0: "cineMRI"},
        {"background": 0, "RV": 1, "MYO": 2, "LV": 3}, num_train, num_test, spacing, seed, overwrite,
        prefix="cine", description="Cine-MRI-like short-axis stacks with thick slices: LV blood pool, myocardial "
                                   "wall and RV crescent changing from slice to slice; label-based.")
