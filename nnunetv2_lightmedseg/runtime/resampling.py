"""nnU-Net's default resampling (``resample_data_or_seg_to_shape``) in numpy/scipy, without nnU-Net or skimage.

nnU-Net 2.8 resamples images (order 3) before the network and logits (order 1) after it with
:func:`nnunetv2.preprocessing.resampling.default_resampling.resample_data_or_seg`, which calls skimage's
``resize(x, shape, order, mode='edge', anti_aliasing=False)`` per channel (per slice along the low-resolution axis
when the spacing is anisotropic, followed by scipy's ``map_coordinates`` with ``order_z`` along that axis).
skimage's ``resize`` is, for float64 input without anti-aliasing, ``scipy.ndimage.zoom(x, out/in, order,
mode='nearest', grid_mode=True)`` clipped to the input's value range; we call exactly that (checked against
nnU-Net's function in tests/test_runtime.py), so the results are bit-identical and skimage (and pandas, used
only for the segmentation branch we do not need) is not a dependency.

Only the non-segmentation branch (``is_seg=False``) is needed at inference: the image is resampled as data, and
so are the logits (nnU-Net's ``resampling_fn_probabilities`` is applied to the logits before the argmax).
"""
from __future__ import annotations

from copy import deepcopy
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

ANISO_THRESHOLD = 3  # nnunetv2.configuration.ANISO_THRESHOLD


def compute_new_shape(old_shape: Sequence[int], old_spacing: Sequence[float],
                      new_spacing: Sequence[float]) -> np.ndarray:
    """nnU-Net's ``compute_new_shape``: round(old_spacing / new_spacing * old_shape) per axis."""
    return np.array([int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape)])


def _lowres_axis(spacing: Sequence[float]) -> np.ndarray:
    return np.where(max(spacing) / np.array(spacing) == 1)[0]


def _do_separate_z(spacing: Sequence[float], threshold: float) -> bool:
    return (np.max(spacing) / np.min(spacing)) > threshold


def determine_do_sep_z_and_axis(force_separate_z: Optional[bool], current_spacing, new_spacing,
                                threshold: float = ANISO_THRESHOLD) -> Tuple[bool, Optional[int]]:
    """nnU-Net's rule: separate-z when either spacing is anisotropic (max/min > threshold) and exactly one axis has
    the largest spacing (that axis is then resampled with ``order_z``)."""
    if force_separate_z is not None:
        do_separate_z = force_separate_z
        axis = _lowres_axis(current_spacing) if force_separate_z else None
    elif _do_separate_z(current_spacing, threshold):
        do_separate_z, axis = True, _lowres_axis(current_spacing)
    elif _do_separate_z(new_spacing, threshold):
        do_separate_z, axis = True, _lowres_axis(new_spacing)
    else:
        do_separate_z, axis = False, None
    if axis is not None:
        if len(axis) in (2, 3):
            do_separate_z, axis = False, None
        else:
            axis = int(axis[0])
    return do_separate_z, axis


def resize(image: np.ndarray, output_shape: Sequence[int], order: int) -> np.ndarray:
    """skimage.transform.resize(image, output_shape, order, mode='edge', anti_aliasing=False) for a float64 image
    of the same dimensionality as ``output_shape`` (what nnU-Net calls)."""
    output_shape = tuple(int(s) for s in output_shape)
    factors = np.divide(image.shape, output_shape)
    out = ndimage.zoom(image, [1 / f for f in factors], order=order, mode="nearest", cval=0, grid_mode=True)
    if order > 0:  # skimage's _clip_warp_output (clip=True): clip to the input range
        np.clip(out, np.asarray(np.min(image)), np.asarray(np.max(image)), out=out)
    return out


def resample_data(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                  new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                  force_separate_z: Optional[bool] = False,
                  separate_z_anisotropy_threshold: float = ANISO_THRESHOLD) -> np.ndarray:
    """``resample_data_or_seg_to_shape(data, new_shape, current_spacing, new_spacing, is_seg=False, order,
    order_z, force_separate_z, threshold)`` of nnU-Net (c, x, y, z input; output in the input's dtype; the input
    itself when the shape does not change)."""
    do_separate_z, axis = determine_do_sep_z_and_axis(force_separate_z, current_spacing, new_spacing,
                                                      separate_z_anisotropy_threshold)
    assert data.ndim == 4, "data must be (c, x, y, z)"
    shape = np.array(data[0].shape)
    new_shape = np.array(new_shape)
    dtype_out = data.dtype
    if not np.any(shape != new_shape):
        return data
    reshaped_final = np.zeros((data.shape[0], *new_shape), dtype=dtype_out)
    data = data.astype(float, copy=False)
    if do_separate_z:
        new_shape_2d = new_shape[1:] if axis == 0 else (new_shape[[0, 2]] if axis == 1 else new_shape[:-1])
        for c in range(data.shape[0]):
            tmp = deepcopy(new_shape)
            tmp[axis] = shape[axis]
            reshaped_here = np.zeros(tmp)
            for slice_id in range(shape[axis]):
                if axis == 0:
                    reshaped_here[slice_id] = resize(data[c, slice_id], new_shape_2d, order)
                elif axis == 1:
                    reshaped_here[:, slice_id] = resize(data[c, :, slice_id], new_shape_2d, order)
                else:
                    reshaped_here[:, :, slice_id] = resize(data[c, :, :, slice_id], new_shape_2d, order)
            if shape[axis] != new_shape[axis]:
                rows, cols, dim = new_shape[0], new_shape[1], new_shape[2]
                orig_rows, orig_cols, orig_dim = reshaped_here.shape
                row_scale = float(orig_rows) / rows
                col_scale = float(orig_cols) / cols
                dim_scale = float(orig_dim) / dim
                map_rows, map_cols, map_dims = np.mgrid[:rows, :cols, :dim]
                map_rows = row_scale * (map_rows + 0.5) - 0.5
                map_cols = col_scale * (map_cols + 0.5) - 0.5
                map_dims = dim_scale * (map_dims + 0.5) - 0.5
                coord_map = np.array([map_rows, map_cols, map_dims])
                reshaped_final[c] = ndimage.map_coordinates(reshaped_here, coord_map, order=order_z, mode="nearest")
            else:
                reshaped_final[c] = reshaped_here
    else:
        for c in range(data.shape[0]):
            reshaped_final[c] = resize(data[c], new_shape, order)
    return reshaped_final
