"""``lightmedseg export``: ONNX and TorchScript from a trained-model folder, parity at two sizes, metadata JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.deploy.export import (DynamicPadWrapper, ExportedRunner, check_parity, export_onnx,
                                                export_torchscript, parity_sizes)

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    HAVE_ONNX = True
except ImportError:
    HAVE_ONNX = False


def test_parity_sizes_exercise_padding():
    sizes = parity_sizes([32, 40, 40])
    assert sizes[0] == (32, 40, 40)
    assert all(s % 16 and s > 16 for s in sizes[1]) and sizes[1] != sizes[0]


def test_wrapper_matches_network_at_odd_sizes():
    torch.manual_seed(0)
    net = LightMedSeg(1, 2).eval()
    x = torch.randn(1, 1, 17, 33, 20)
    with torch.no_grad():
        assert torch.equal(DynamicPadWrapper(net, 16)(x), net(x))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("options", [{}, {"use_lspm": False, "use_anchors": False, "use_skip_router": False}],
                         ids=["default", "ablated"])
def test_export_network_dynamic_sizes(tmp_path, fmt, options):
    """Exported at one size, the model must match PyTorch at a different, non-multiple-of-16 size and batch."""
    if fmt == "onnx" and not HAVE_ONNX:
        pytest.skip("onnx/onnxruntime not installed: pip install -e '.[export]' in the clone")
    torch.manual_seed(0)
    net = LightMedSeg(2, 3, **options).eval()
    path = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    example = torch.randn(1, 2, 32, 32, 48)
    (export_onnx if fmt == "onnx" else export_torchscript)(net, example, path)
    res = check_parity(net, ExportedRunner(path, fmt), 2, [(32, 32, 48), (19, 37, 22)])
    assert [r["input_shape"] for r in res] == [[1, 2, 32, 32, 48], [2, 2, 19, 37, 22]]
    for r in res:
        assert r["max_abs_diff"] < 1e-4, r


def _input_layouts(net, x, trace=None):
    """Whether the stem's input was channels_last_3d, per call: eager, or within ``trace(net, x)``."""
    seen = []
    hook = net.stem.primary.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last_3d)))
    try:
        with torch.no_grad():
            net(x) if trace is None else trace(net, x)
    finally:
        hook.remove()
    return seen


def test_cpu_layout_is_channels_last_except_in_onnx_export(tmp_path):
    """The network runs in channels_last_3d on the CPU (oneDNN speed), also in a TorchScript trace; only the legacy
    ONNX exporter, which cannot express that memory format, traces it in the default layout (no exporter-wide
    symbolic override needed)."""
    net = LightMedSeg(2, 2).eval()
    x = torch.randn(1, 2, 16, 16, 16)  # (one channel would be contiguous in both layouts)
    assert _input_layouts(net, x) == [True]
    assert _input_layouts(net, x, lambda n, v: torch.jit.trace(n, v, check_trace=False)) == [True]
    if HAVE_ONNX:
        path = tmp_path / "m.onnx"
        assert _input_layouts(net, x, lambda n, v: export_onnx(n, v, path)) == [False]
        assert _input_layouts(net, x) == [True]  # and eager again after the export


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx/onnxruntime not installed: pip install -e '.[export]' in the clone")
def test_export_of_a_channels_last_network(tmp_path):
    """The trainer converts the network's weights to channels_last_3d on the CPU; such a network exports as well."""
    torch.manual_seed(0)
    net = LightMedSeg(1, 2).eval().to(memory_format=torch.channels_last_3d)
    path = tmp_path / "m.onnx"
    export_onnx(net, torch.randn(1, 1, 32, 32, 32), path)
    res = check_parity(net, ExportedRunner(path, "onnx"), 1, [(17, 33, 20)])
    assert res[0]["max_abs_diff"] < 1e-4, res


@pytest.mark.slow
@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_cli_from_trained_model(tmp_path, fmt, suffix, capsys):
    if fmt == "onnx" and not HAVE_ONNX:
        pytest.skip("onnx/onnxruntime not installed: pip install -e '.[export]' in the clone")
    from tiny_model import CONFIG, FOLD, TINY_ID, TRAINER, trained_model_results
    from nnunetv2_lightmedseg.cli.main import main

    results = trained_model_results()
    out = tmp_path / f"model{suffix}"
    rc = main(["export", "-d", str(TINY_ID), "-c", CONFIG, "-f", str(FOLD), "-tr", TRAINER, "-o", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert out.is_file() and out.stat().st_size > 100_000  # ~0.47M float32 weights
    assert printed.count("parity") == 2 and "max |exported - PyTorch|" in printed
    meta = json.loads(out.with_suffix(".json").read_text())

    plans = json.loads((results / f"Dataset{TINY_ID:03d}_LMSBlobs" / f"{TRAINER}__nnUNetPlans__{CONFIG}"
                        / "plans.json").read_text())
    cfg = plans["configurations"][CONFIG]
    assert meta["format"] == fmt
    assert meta["patch_size"] == cfg["patch_size"]
    assert np.allclose(meta["spacing"], cfg["spacing"])
    assert meta["normalization_schemes"] == cfg["normalization_schemes"]
    assert meta["foreground_intensity_properties_per_channel"] == plans["foreground_intensity_properties_per_channel"]
    assert meta["channels"][0]["intensity_properties"] == plans["foreground_intensity_properties_per_channel"]["0"]
    assert meta["transpose_forward"] == plans["transpose_forward"]
    assert meta["transpose_backward"] == plans["transpose_backward"]
    assert meta["labels"] == {"background": 0, "core": 1, "shell": 2}
    assert meta["output_activation"] == "softmax" and meta["has_regions"] is False
    assert meta["num_input_channels"] == 1 and meta["num_output_channels"] == 3
    assert meta["network_divisor"] == [16, 16, 16] and meta["trainer_name"] == TRAINER
    assert meta["nnunet_version"] and meta["channels"][0]["name"] == "MRI0"
    checks = meta["parity"]["checks"]
    assert len(checks) == 2 and checks[0]["input_shape"][2:] == cfg["patch_size"]
    assert checks[1]["input_shape"][2:] != cfg["patch_size"]
    assert all(c["max_abs_diff"] <= meta["parity"]["tolerance"] for c in checks)


@pytest.mark.slow
def test_export_cli_fails_on_tolerance_and_bad_folder(tmp_path, capsys):
    from tiny_model import CONFIG, FOLD, TINY_ID, TRAINER, trained_model_results
    from nnunetv2_lightmedseg.cli.main import main

    trained_model_results()
    # a tolerance no float32 export can meet: the command must fail with a clear message
    rc = main(["export", "-d", str(TINY_ID), "-c", CONFIG, "-f", str(FOLD), "-tr", TRAINER,
               "-o", str(tmp_path / "m.pt"), "--tolerance", "-1"])
    assert rc != 0 and "parity check failed" in capsys.readouterr().err
    rc = main(["export", "-d", str(TINY_ID), "-c", CONFIG, "-f", "3", "-tr", TRAINER, "-o", str(tmp_path / "m.pt")])
    assert rc != 0 and "checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ --benchmark
@pytest.mark.skipif(not HAVE_ONNX, reason="onnx/onnxruntime not installed: pip install -e '.[export]' in the clone")
def test_benchmark_latency_times_both_runtimes_and_restores_the_thread_count(tmp_path):
    from nnunetv2_lightmedseg.deploy.export import benchmark_latency

    torch.manual_seed(0)
    net = LightMedSeg(1, 2).eval()
    path = tmp_path / "m.onnx"
    export_onnx(net, torch.randn(1, 1, 16, 16, 16), path)
    threads = torch.get_num_threads()
    res = benchmark_latency(net, ExportedRunner(path, "onnx", threads=1), (1, 1, 16, 16, 32), threads=1, repeats=1,
                            warmup=0)
    assert set(res) == {"pytorch_s", "exported_s"} and all(v > 0 for v in res.values())
    assert set(benchmark_latency(net, None, (1, 1, 16, 16, 16), threads=1, repeats=1, warmup=0)) == {"pytorch_s"}
    assert torch.get_num_threads() == threads


def test_export_benchmark_cli_bad_arguments(capsys):
    from nnunetv2_lightmedseg.cli.main import main

    assert main(["export", "--benchmark", "--shape", "8", "32", "32"]) == 2
    assert "at least 16 voxels" in capsys.readouterr().err
    assert main(["export"]) == 2
    assert "-d is required" in capsys.readouterr().err
    assert main(["export", "--benchmark", "--in-channels", "0"]) == 2
    assert "--in-channels and --num-classes must be >= 1" in capsys.readouterr().err


@pytest.mark.slow  # exports at 64^3 (on purpose: the timed size differs from the export size)
@pytest.mark.skipif(not HAVE_ONNX, reason="onnx/onnxruntime not installed: pip install -e '.[export]' in the clone")
def test_export_benchmark_cli_untrained_network(tmp_path, capsys):
    from nnunetv2_lightmedseg.cli.main import main

    js = tmp_path / "bench.json"
    assert main(["export", "--benchmark", "--shape", "32", "32", "48", "--in-channels", "1", "--num-classes", "2",
                 "--repeats", "1", "--threads", "1", "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "LightMedSeg(1, 2) untrained, input (1, 1, 32, 32, 48), 1 threads, median of 1: PyTorch" in printed
    out = json.loads(js.read_text())
    assert out["shape"] == [1, 1, 32, 32, 48] and out["threads"] == 1 and out["repeats"] == 1
    assert out["pytorch_ms"] > 0 and out["onnxruntime_ms"] > 0 and out["max_abs_diff"] < 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ONNX, reason="onnx/onnxruntime not installed: pip install -e '.[export]' in the clone")
def test_export_benchmark_cli_trained_model(tmp_path, capsys):
    from tiny_model import CONFIG, FOLD, TINY_ID, TRAINER, trained_model_results
    from nnunetv2_lightmedseg.cli.main import main

    trained_model_results()
    out = tmp_path / "model.onnx"
    assert main(["export", "-d", str(TINY_ID), "-c", CONFIG, "-f", str(FOLD), "-tr", TRAINER, "-o", str(out),
                 "--benchmark", "--shape", "32", "32", "32", "--repeats", "1", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "CPU latency (1, 1, 32, 32, 32), 1 threads (median of 1): PyTorch" in printed and "onnxruntime" in printed
    bench = json.loads(out.with_suffix(".json").read_text())["benchmark"]
    assert bench["shape"] == [1, 1, 32, 32, 32] and bench["threads"] == 1 and bench["repeats"] == 1
    assert bench["pytorch_s"] > 0 and bench["exported_s"] > 0
