"""nash: neural architecture search by network morphisms (NASH) and differentiable search (DARTS family).

Dependencies and why:
- torch: the networks. No upper pin, so a user's own (CUDA) build is kept; the README's install
  step puts the CPU build in first where no torch is present.
- networkx: the graph IR every network is held in.
- numpy, click (CLI), rich (progress bars, tables), matplotlib (run plots, architecture drawings).
- scikit-learn: ships the 8x8 digits data set in its wheel, the built-in default data (no download).
- torchvision is an extra ([vision]): only the image-folder data set and nothing in the core use it.
- ray is an extra ([ray]) for training a step's candidates in parallel (--executor ray); [onnx]
  for ONNX export: onnx, and onnxscript, which torch's current (dynamo) ONNX exporter translates with.
  ray>=2.10: tests/test_ray.py passes on 2.10, 2.30 and 2.60; 2.9 imports pkg_resources,
  which setuptools (81 on) no longer ships, so it fails to start in a fresh environment.
- [test] adds pytest-xdist: the suite's tests run one torch thread each (tests/conftest.py), so
  `-n auto --dist loadfile` runs one test file per core (a file's module fixtures, such as the
  two-node Ray cluster, stay in one worker): 7 minutes instead of 13 on 2 cores.
- [test] adds onnxruntime (a CPU wheel, no CUDA), so the tests run an exported ONNX file, and ray,
  so CI runs the ray executor's tests (tests/test_ray.py) on a local Ray: its wheel pulls no
  CUDA packages (only msgpack beside what is here), ~240 MB installed, ~20 s to install.
"""
from setuptools import find_packages, setup

setup(
    name="nash",
    version="0.1.0",
    description="Neural architecture search: NASH hill climbing with network morphisms, and DARTS-family search",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nash", "nash.*", "morphisms", "morphisms.*"]),
    install_requires=[
        "torch>=2.6",  # torch.export with Dim, the dynamo ONNX exporter
        "networkx>=3.0",
        "numpy>=1.24",
        "click>=8.1",
        "rich>=13.0",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
    ],
    extras_require={
        "test": ["pytest>=7.4", "pytest-xdist>=3.5", "hypothesis>=6.80", "onnx>=1.14", "onnxscript>=0.7",
                 "onnxruntime>=1.17", "ray>=2.10"],
        "onnx": ["onnx>=1.14", "onnxscript>=0.7"],
        "ray": ["ray>=2.10"],
        "vision": ["torchvision>=0.16"],
    },
    entry_points={"console_scripts": ["nash=nash.cli:main"]},
)
