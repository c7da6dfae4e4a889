"""What ``nnUNetv2_predict`` does to one case, step by step, in numpy/scipy/SimpleITK/onnxruntime.

Each function names the nnU-Net 2.8 function it reproduces; the order of the floating-point operations and the
dtypes are kept (float32 image, float16 accumulation of the Gaussian-weighted tiles and of the fold ensemble,
as nnU-Net's CPU path), so the only difference left is the network's forward pass (onnxruntime instead of
PyTorch: logits differ by ~1e-6 relative). tests/test_runtime.py checks the steps against nnU-Net's functions.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from . import RuntimeInputError
from .resampling import compute_new_shape, resample_data


# ----------------------------------------------------------------------------------------------- reading / writing
def read_images(files: Sequence[str]) -> Tuple[np.ndarray, Dict]:
    """nnunetv2.imageio.simpleitk_reader_writer.SimpleITKIO.read_images: (c, z, y, x) float32 and properties
    (``spacing`` in array order, the SimpleITK geometry of the first file)."""
    import SimpleITK as sitk

    images, spacings, origins, directions, spacings_nn = [], [], [], [], []
    for f in files:
        try:
            itk = sitk.ReadImage(str(f))
        except RuntimeError as e:
            raise RuntimeInputError(f"cannot read {f}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}") from None
        spacings.append(itk.GetSpacing())
        origins.append(itk.GetOrigin())
        directions.append(itk.GetDirection())
        arr = sitk.GetArrayFromImage(itk)
        if arr.ndim == 2:
            arr = arr[None, None]
            spacings_nn.append((max(spacings[-1]) * 999, *list(spacings[-1])[::-1]))
        elif arr.ndim == 3:
            arr = arr[None]
            spacings_nn.append(list(spacings[-1])[::-1])
        elif arr.ndim == 4:
            spacings_nn.append(list(spacings[-1])[::-1][1:])
        else:
            raise RuntimeInputError(f"{f} has {arr.ndim} dimensions; expected a 2D, 3D or 4D image")
        images.append(arr)
        spacings_nn[-1] = list(np.abs(spacings_nn[-1]))
    if len({a.shape for a in images}) > 1:
        raise RuntimeInputError("the channel files of a case must have the same shape: "
                                + ", ".join(f"{f} {a.shape[1:]}" for f, a in zip(files, images)))
    if len({tuple(s) for s in spacings}) > 1:
        raise RuntimeInputError("the channel files of a case must have the same spacing: "
                                + ", ".join(f"{f} {s}" for f, s in zip(files, spacings)))
    props = {"sitk_stuff": {"spacing": spacings[0], "origin": origins[0], "direction": directions[0]},
             "spacing": spacings_nn[0]}
    return np.vstack(images, dtype=np.float32, casting="unsafe"), props


def write_seg(seg: np.ndarray, path: str, props: Dict) -> None:
    """SimpleITKIO.write_seg: the label map with the input's spacing, origin and direction (compressed)."""
    import SimpleITK as sitk

    from .files import atomic_path

    dim = len(props["sitk_stuff"]["spacing"])
    if dim == 2:
        seg = seg[0]
    itk = sitk.GetImageFromArray(seg.astype(np.uint8 if np.max(seg) < 255 else np.uint16, copy=False))
    itk.SetSpacing(props["sitk_stuff"]["spacing"])
    itk.SetOrigin(props["sitk_stuff"]["origin"])
    itk.SetDirection(props["sitk_stuff"]["direction"])
    ending = next((e for e in (".nii.gz", ".nii", ".nrrd", ".mha", ".gipl", ".mhd") if path.endswith(e)), "")
    with atomic_path(path, suffix=ending) as tmp:
        sitk.WriteImage(itk, tmp, True)


# --------------------------------------------------------------------------------------------------- preprocessing
def create_nonzero_mask(data: np.ndarray) -> np.ndarray:
    """nnunetv2.preprocessing.cropping.cropping.create_nonzero_mask."""
    mask = data[0] != 0
    for c in range(1, data.shape[0]):
        mask |= data[c] != 0
    return ndimage.binary_fill_holes(mask)


def get_bbox_from_mask(mask: np.ndarray) -> List[List[int]]:
    """acvl_utils' get_bbox_from_mask (half-open; the whole axis when the mask is empty)."""
    bbox = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        bbox.append([int(hit[0]), int(hit[-1]) + 1] if hit.size else [0, mask.shape[axis]])
    return bbox


def crop_to_nonzero(data: np.ndarray):
    """crop_to_nonzero without a segmentation: cropped data, the nonzero 'seg' (0 inside, -1 outside), bbox."""
    mask = create_nonzero_mask(data)
    bbox = get_bbox_from_mask(mask)
    slicer = tuple(slice(*b) for b in bbox)
    mask = mask[slicer][None]
    data = data[(slice(None),) + slicer]
    seg = np.where(mask, np.int8(0), np.int8(-1))
    return data, seg, bbox


def normalize_channel(image: np.ndarray, seg: np.ndarray, scheme: str, use_mask: bool, props: Optional[Dict]):
    """nnunetv2.preprocessing.normalization.default_normalization_schemes (float32, same operation order)."""
    eps = 1e-8
    image = image.astype(np.float32, copy=False)
    if scheme == "ZScoreNormalization":
        if use_mask:
            mask = seg >= 0
            mean = image[mask].mean()
            std = image[mask].std()
            image[mask] = (image[mask] - mean) / (max(std, eps))
        else:
            mean = image.mean()
            std = image.std()
            image -= mean
            image /= (max(std, eps))
    elif scheme == "CTNormalization":
        np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
        image -= props["mean"]
        image /= max(props["std"], eps)
    elif scheme == "NoNormalization":
        pass
    elif scheme == "RescaleTo01Normalization":
        image -= image.min()
        image /= np.clip(image.max(), a_min=eps, a_max=None)
    elif scheme == "RGBTo01Normalization":
        if image.min() < 0 or image.max() > 255:
            raise RuntimeInputError("RGBTo01Normalization expects values in 0..255; this image has "
                                    f"{image.min()}..{image.max()}")
        image /= 255.
    else:
        raise RuntimeInputError(f"normalisation {scheme!r} is not implemented by the runtime")
    return image


def preprocess(data: np.ndarray, props: Dict, bundle: Dict) -> Tuple[np.ndarray, Dict]:
    """DefaultPreprocessor.run_case_npy (no segmentation): transpose, crop to non-zero, normalise, resample."""
    pp = bundle["preprocessing"]
    tf = pp["transpose_forward"]
    data = data.astype(np.float32)  # a copy, as nnU-Net
    data = data.transpose([0, *[i + 1 for i in tf]])
    original_spacing = [props["spacing"][i] for i in tf]
    props["shape_before_cropping"] = data.shape[1:]
    data, seg, bbox = crop_to_nonzero(data)
    props["bbox_used_for_cropping"] = bbox
    props["shape_after_cropping_and_before_resampling"] = data.shape[1:]
    target_spacing = list(pp["target_spacing"])
    if len(target_spacing) < len(data.shape[1:]):
        target_spacing = [original_spacing[0]] + target_spacing
    new_shape = compute_new_shape(data.shape[1:], original_spacing, target_spacing)
    for ch in bundle["input"]["channels"]:
        c = ch["index"]
        data[c] = normalize_channel(data[c], seg[0], ch["normalization_scheme"], ch["use_mask_for_norm"],
                                    ch.get("intensity_properties"))
    data = resample_data(data, new_shape, original_spacing, target_spacing, **_resampling_kwargs(pp["resampling_data"]))
    return np.ascontiguousarray(data, dtype=np.float32), props


def _resampling_kwargs(spec: Dict) -> Dict:
    return {"order": spec["order"], "order_z": spec["order_z"], "force_separate_z": spec["force_separate_z"],
            "separate_z_anisotropy_threshold": spec.get("separate_z_anisotropy_threshold", 3)}


# --------------------------------------------------------------------------------------------------- sliding window
@lru_cache(maxsize=4)
def compute_gaussian(tile_size: Tuple[int, ...], sigma_scale: float = 1. / 8,
                     value_scaling_factor: float = 10) -> np.ndarray:
    """nnunetv2.inference.sliding_window_prediction.compute_gaussian (float16, zeros replaced by the minimum)."""
    tmp = np.zeros(tile_size)
    tmp[tuple(i // 2 for i in tile_size)] = 1
    g = ndimage.gaussian_filter(tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0)
    g /= (np.max(g) / value_scaling_factor)
    g = g.astype(np.float16)
    mask = g == 0
    g[mask] = np.min(g[~mask])
    return g


def compute_steps(image_size: Sequence[int], tile_size: Sequence[int], tile_step_size: float) -> List[List[int]]:
    """compute_steps_for_sliding_window."""
    target = [i * tile_step_size for i in tile_size]
    num_steps = [int(np.ceil((i - k) / j)) + 1 for i, j, k in zip(image_size, target, tile_size)]
    steps = []
    for dim in range(len(tile_size)):
        max_step = image_size[dim] - tile_size[dim]
        actual = max_step / (num_steps[dim] - 1) if num_steps[dim] > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(num_steps[dim])])
    return steps


def pad_to_patch(data: np.ndarray, patch: Sequence[int]):
    """acvl_utils' pad_nd_image(data, patch, 'constant', value 0, return_slicer=True): centred, larger half above."""
    old = np.array(data.shape)
    new = [max(p, s) for p, s in zip(list(data.shape[:1]) + list(patch), data.shape)]
    diff = np.array(new) - old
    pad = [[int(d // 2), int(d // 2 + d % 2)] for d in diff]
    res = np.pad(data, pad, "constant", constant_values=0) if diff.any() else data
    slicer = tuple(slice(lo, s - hi) for (lo, hi), s in zip(pad, res.shape))
    return res, slicer


def mirror_combinations(axes: Optional[Sequence[int]]) -> List[Tuple[int, ...]]:
    """nnU-Net's order of the mirrored predictions (itertools.combinations of the spatial axes, in the tile's
    (b, c, x, y, z) numbering)."""
    if not axes:
        return []
    ax = [m + 2 for m in axes]
    return [c for i in range(len(ax)) for c in itertools.combinations(ax, i + 1)]


def _div_by_count(x: np.ndarray, n: int) -> np.ndarray:
    """PyTorch's ``x /= n`` for a CPU scalar ``n``: multiplication by the reciprocal, in float32 for float16 data
    (ATen's div_true_kernel), rounded back to x's dtype."""
    if n == 1:
        return x
    r = np.float32(1) / np.float32(n)
    return (x.astype(np.float32) * r).astype(x.dtype) if x.dtype == np.float16 else x * r


def predict_tile(net: Callable[[np.ndarray], np.ndarray], x: np.ndarray, combos) -> np.ndarray:
    """_internal_maybe_mirror_and_predict: the tile's logits, averaged over the mirrored inputs (float32)."""
    pred = np.array(net(x), dtype=np.float32, copy=True)
    for axes in combos:
        pred += np.flip(net(np.ascontiguousarray(np.flip(x, axes))), axes)
    return _div_by_count(pred, len(combos) + 1)


def sliding_window(net: Callable[[np.ndarray], np.ndarray], data: np.ndarray, num_heads: int, patch: Sequence[int],
                   tile_step_size: float, mirror_axes, gaussian_spec: Optional[Dict],
                   progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """predict_sliding_window_return_logits on the CPU: pad, tiles at nnU-Net's steps, Gaussian-weighted sum in
    float16 (nnU-Net preallocates its result arrays as torch.half), divide, revert the padding."""
    patch = tuple(int(p) for p in patch)
    padded, revert = pad_to_patch(data, patch)
    steps = compute_steps(padded.shape[1:], patch, tile_step_size)
    slicers = [tuple(slice(s, s + t) for s, t in zip(start, patch)) for start in itertools.product(*steps)]
    logits = np.zeros((num_heads, *padded.shape[1:]), dtype=np.float16)
    n_pred = np.zeros(padded.shape[1:], dtype=np.float16)
    gaussian = (compute_gaussian(patch, gaussian_spec["sigma_scale"], gaussian_spec["value_scaling_factor"])
                if gaussian_spec else np.float16(1))
    combos = mirror_combinations(mirror_axes)
    for i, sl in enumerate(slicers):
        tile = np.ascontiguousarray(padded[(slice(None),) + sl][None])
        pred = predict_tile(net, tile, combos)[0]
        if gaussian_spec:
            pred *= gaussian
        logits[(slice(None),) + sl] += pred
        n_pred[sl] += gaussian
        if progress is not None:
            progress(i + 1, len(slicers))
    np.divide(logits, n_pred, out=logits)
    if np.any(np.isinf(logits)):
        raise RuntimeError("inf in the predicted logits (float16 overflow, as nnU-Net would report)")
    return logits[(slice(None), *revert[1:])]


def ensemble(per_fold: Sequence[np.ndarray]) -> np.ndarray:
    """predict_logits_from_preprocessed_data: the folds' float16 logits summed, divided by the fold count."""
    pred = per_fold[0]
    for p in per_fold[1:]:
        pred = pred + p
    return _div_by_count(pred, len(per_fold))


# ----------------------------------------------------------------------------------------------------------- export
def logits_to_segmentation(logits: np.ndarray, bundle: Dict) -> np.ndarray:
    """LabelManager.convert_logits_to_segmentation: argmax, or sigmoid > 0.5 painted in regions_class_order."""
    if bundle["labels"]["has_regions"]:
        probs = 1 / (1 + np.exp(-logits.astype(np.float32)))
        seg = np.zeros(logits.shape[1:], dtype=np.uint16)
        for i, c in enumerate(bundle["labels"]["regions_class_order"]):
            seg[probs[i] > 0.5] = c
        return seg
    return logits.argmax(0)


def export_segmentation(logits: np.ndarray, props: Dict, bundle: Dict) -> np.ndarray:
    """convert_predicted_logits_to_segmentation_with_correct_shape: resample the logits to the cropped original
    shape (order 1, separate-z rule), segmentation, revert the crop, revert the transpose."""
    pp = bundle["preprocessing"]
    tf = pp["transpose_forward"]
    spacing_t = [props["spacing"][i] for i in tf]
    current = pp["target_spacing"] if len(pp["target_spacing"]) == len(props["shape_after_cropping_and_before_resampling"]) \
        else [spacing_t[0], *pp["target_spacing"]]
    logits = resample_data(logits, props["shape_after_cropping_and_before_resampling"], current, spacing_t,
                           **_resampling_kwargs(pp["resampling_probabilities"]))
    seg = logits_to_segmentation(logits, bundle)
    out = np.zeros(props["shape_before_cropping"], dtype=np.uint8 if bundle["output"]["num_foreground_labels"] < 255
                   else np.uint16)
    out[tuple(slice(*b) for b in props["bbox_used_for_cropping"])] = seg
    return out.transpose(pp["transpose_backward"])


# --------------------------------------------------------------------------------------------------- postprocessing
def _label_or_region_mask(seg: np.ndarray, label_or_region) -> np.ndarray:
    if np.isscalar(label_or_region):
        return seg == label_or_region
    mask = np.zeros_like(seg, dtype=bool)
    for r in label_or_region:
        mask[seg == r] = True
    return mask


def remove_all_but_largest_component(seg: np.ndarray, labels_or_regions, background_label: int = 0) -> np.ndarray:
    """nnU-Net's remove_all_but_largest_component_from_segmentation (components with full connectivity, as
    skimage.measure.label's default; every component of the largest size is kept)."""
    mask = np.zeros_like(seg, dtype=bool)
    if not isinstance(labels_or_regions, list):
        labels_or_regions = [labels_or_regions]
    for lr in labels_or_regions:
        mask |= _label_or_region_mask(seg, tuple(lr) if isinstance(lr, list) else lr)
    labeled, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    ret = np.copy(seg)
    if n:
        sizes = np.bincount(labeled.ravel())[1:]
        keep = np.flatnonzero(sizes == sizes.max()) + 1
        ret[mask & ~np.isin(labeled, keep)] = background_label
    return ret


POSTPROCESSING_FUNCTIONS = {"remove_all_but_largest_component_from_segmentation": remove_all_but_largest_component}


def postprocess(seg: np.ndarray, steps: Sequence[Dict]) -> np.ndarray:
    """apply_postprocessing with the steps of the bundle (nnU-Net's postprocessing.pkl, as JSON)."""
    for step in steps:
        seg = POSTPROCESSING_FUNCTIONS[step["function"]](seg, **step["kwargs"])
    return seg
