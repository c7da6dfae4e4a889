"""A LightMedSeg bundle's runtime: NIfTI (or any SimpleITK format) in, label map out, without PyTorch or nnU-Net.

``lightmedseg export --bundle`` writes a folder with the ONNX network of each fold and ``bundle.json`` (everything
nnU-Net's predictor does between a file on disk and a label map on disk). This package runs it with numpy, scipy,
SimpleITK and onnxruntime only::

    pip install --no-deps ./nnunetv2-lightmedseg      # the checkout or the wheel
    pip install numpy scipy SimpleITK onnxruntime
    lightmedseg-run -i INPUT_FOLDER -o OUTPUT_FOLDER --bundle BUNDLE_FOLDER

Nothing here imports torch, nnunetv2 or the rest of this package (tests/test_runtime.py checks that in a process
where both are unimportable). See docs/deployment.md.
"""
FORMAT = "lightmedseg-bundle"
FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"


class RuntimeInputError(Exception):
    """Bad input (files, bundle, options): the message says what is wrong and what to do; the CLI exits 2."""
