import re
from pathlib import Path

from setuptools import find_packages, setup

# the version lives in nnunetv2_lightmedseg/__init__.py only (`lightmedseg --version` prints it)
VERSION = re.search(r'^__version__ = "([^"]+)"', (Path(__file__).parent / "nnunetv2_lightmedseg" / "__init__.py")
                    .read_text(), re.M).group(1)

setup(
    name="nnunetv2-lightmedseg",
    version=VERSION,
    description="LightMedSeg (0.48M-parameter 3D segmentation network) as an nnU-Net v2 plugin: "
                "network, boundary-augmented loss, trainer, plans override and benchmarks.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunetv2_lightmedseg", "nnunetv2_lightmedseg.*"]),
    install_requires=[
        "torch>=2.4",  # fused AdamW on the CPU, torch.is_autocast_enabled(device_type) (network/convolutions.py)
        "nnunetv2>=2.8",
        "batchgenerators>=0.25",
        "SimpleITK>=2.2",
        "numpy",
        "acvl-utils",
        "dynamic-network-architectures",
        "matplotlib",
    ],
    extras_require={
        "export": ["onnx", "onnxruntime"],
        "test": ["pytest", "onnx", "onnxruntime", "build"],  # build: tests/test_wheel.py
        # the bundle runtime alone (lightmedseg-run): pip install --no-deps nnunetv2-lightmedseg, then these
        "runtime": ["numpy", "scipy", "SimpleITK>=2.2", "onnxruntime"],
    },
    entry_points={"console_scripts": ["lightmedseg=nnunetv2_lightmedseg.cli.main:main",
                                      "lightmedseg-run=nnunetv2_lightmedseg.runtime.cli:main"]},
)
