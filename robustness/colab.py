"""The notebooks' set-up on Colab: install the cloned checkout, keeping the runtime's own torch.

Colab's GPU runtimes come with a CUDA build of torch and torchvision, its TPU runtimes with a
torch/torch_xla pair built for each other. Installing the package must not replace them, so
the install is constrained to the versions already there: pip then either keeps them or stops
with a conflict, never swapping in a build from the package index. Nothing here imports torch.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

KEPT = ("torch", "torchvision", "torch_xla")
PIP_INSTALL = (sys.executable, "-m", "pip", "install", "--quiet")


def installed_pins(names: Sequence[str] = KEPT) -> list[str]:
    """``name==version`` for each of ``names`` installed here (a local version such as ``+cu126`` included)."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def install_checkout(checkout: str | Path = ".", extras: str = "notebooks",
                     pip: Sequence[str] = PIP_INSTALL) -> None:
    """``pip install -e "checkout[extras]"`` with the installed torch, torchvision and torch_xla as
    constraints; ``pip`` is the install command (the tests pass a dry run)."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "keep-torch.txt"
        constraints.write_text("\n".join(installed_pins()) + "\n")
        subprocess.run([*pip, "-c", str(constraints), "-e", f"{Path(checkout).resolve()}[{extras}]"], check=True)
