#!/usr/bin/env python
"""ir_d2: a detectron2 extension for infrared (thermal) image segmentation.

torch, torchvision and detectron2 are prerequisites, installed first (see README.md):
detectron2 is not on PyPI and must be built against the installed torch.
"""

from setuptools import find_packages, setup

DEPLOY = ["onnx", "onnxscript", "onnxruntime"]

setup(
    name="ir_d2",
    version="0.1.0",
    description="detectron2 extension for infrared image segmentation "
    "(BNSA Mask R-CNN, SGEM U-Net, SIRST-5K)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["ir_d2", "ir_d2.*"]) + ["ir_d2.model_zoo.configs"],
    # the model-zoo configs ship inside the package (as detectron2's do), from the top-level
    # configs/ folder, so a wheel or a non-editable install finds them
    package_dir={"ir_d2.model_zoo.configs": "configs"},
    package_data={"ir_d2.model_zoo.configs": ["*.yaml", "**/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "scipy",
        "opencv-python-headless",
        "Pillow",
        "pycocotools>=2.0.2",
        "fvcore>=0.1.5",
        "iopath",
        "tqdm",
        "tabulate",
        "matplotlib",
    ],
    extras_require={
        # export to ONNX (torch's exporter needs onnx and onnxscript) and ONNX Runtime
        "deploy": DEPLOY,
        "dev": ["pytest", "hypothesis", "ruff", "black", "isort", *DEPLOY],
    },
)
