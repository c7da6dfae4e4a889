"""``lightmedseg adapt-weights``: an isotropic model's weights fitted to a thick-slice network."""
from __future__ import annotations

import pytest
import torch

from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.deploy.adapt_weights import AdaptWeightsError, adapt_state_dict, resample_taps

THICK = [[1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]]


def test_resampled_kernel_keeps_each_output_voxels_gain():
    torch.manual_seed(0)
    src = torch.nn.ConvTranspose3d(4, 3, kernel_size=2, stride=2, bias=False)
    dst = torch.nn.ConvTranspose3d(4, 3, kernel_size=(1, 2, 2), stride=(1, 2, 2), bias=False)
    dst.weight.data = resample_taps(src.weight.data, tuple(dst.weight.shape), (2, 2, 2), (1, 2, 2))
    x = torch.randn(1, 4, 3, 5, 5)
    with torch.no_grad():
        y_src = src(x)  # (1, 3, 6, 10, 10): slices 2i and 2i+1 come from input slice i
        y_dst = dst(x)  # (1, 3, 3, 10, 10)
    torch.testing.assert_close(y_dst, 0.5 * (y_src[:, :, 0::2] + y_src[:, :, 1::2]))
    # and back: kernel 1 -> 2 repeats the tap
    back = resample_taps(dst.weight.data, tuple(src.weight.shape), (1, 2, 2), (2, 2, 2))
    torch.testing.assert_close(back[:, :, 0], dst.weight.data[:, :, 0])
    torch.testing.assert_close(back[:, :, 1], dst.weight.data[:, :, 0])


def test_isotropic_weights_fit_the_thick_slice_network_and_nnunets_loader_accepts_them():
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    torch.manual_seed(0)
    source = LightMedSeg(1, 3)
    target = LightMedSeg(1, 4, strides=THICK)
    with pytest.raises(AssertionError):  # what a user sees today: nnU-Net's loader refuses the shapes
        _load_like_nnunet(load_pretrained_weights, target, source.state_dict())
    adapted, resampled = adapt_state_dict(source.state_dict(), target)
    assert sorted(r.split()[0] for r in resampled) == ["decoder.0.up.weight", "decoder.2.up.weight"]
    _load_like_nnunet(load_pretrained_weights, target, adapted)
    state = target.state_dict()
    for key, value in source.state_dict().items():
        if ".seg_layers." not in key and "decoder.0.up" not in key and "decoder.2.up" not in key:
            assert torch.equal(state[key], value), key  # every other weight copied unchanged
    out = target(torch.randn(1, 1, 10, 32, 32))
    assert out.shape == (1, 4, 10, 32, 32) and torch.isfinite(out).all()


def _load_like_nnunet(load_pretrained_weights, network, state_dict):
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".pth") as f:
        torch.save({"network_weights": state_dict}, f.name)
        load_pretrained_weights(network, f.name)


def test_other_differences_are_named():
    source = LightMedSeg(1, 3, use_lspm=False)
    with pytest.raises(AdaptWeightsError, match="lspm.*same trainer variant"):
        adapt_state_dict(source.state_dict(), LightMedSeg(1, 3, strides=THICK))
