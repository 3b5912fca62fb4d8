"""The Jupyter kernelspecs of runtimes: where they live, writing and removing ours, reading installed ones."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from nbjobs.errors import InvalidRequest
from nbjobs.models.runtimes import RuntimeSpec
from nbjobs.settings import Settings

KERNEL_PREFIX = "nbjobs-"  # kernelspecs this server writes (and may delete) are named nbjobs-<id[:12]>


def jupyter_path(settings: Settings) -> Path:
    """The directory to put on a runner's ``JUPYTER_PATH``: it holds ``kernels/`` of the runtimes."""
    return (settings.store.data_dir / "jupyter").absolute()


def kernel_dir(settings: Settings) -> Path:
    """Where registered runtimes' kernelspecs live: ``<data_dir>/jupyter/kernels``."""
    return jupyter_path(settings) / "kernels"


def write_kernelspec(kernels: Path, spec: RuntimeSpec) -> Path:
    """Write ``<kernels>/<kernel_name>/kernel.json`` starting ipykernel in ``spec.python``; returns it."""
    folder = kernels / spec.kernel_name
    folder.mkdir(parents=True, exist_ok=True)
    kernel = {
        "argv": [spec.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": spec.name,
        "language": "python",
        "metadata": {"nbjobs": {"runtime_id": spec.runtime_id}},
    }
    tmp = folder / "kernel.json.tmp"
    tmp.write_text(json.dumps(kernel, indent=1) + "\n", encoding="utf-8")
    return tmp.replace(folder / "kernel.json")


def remove_kernelspec(kernels: Path, kernel_name: str) -> None:
    """Delete one of our kernelspecs (never one this server did not write)."""
    if kernel_name.startswith(KERNEL_PREFIX):
        shutil.rmtree(kernels / kernel_name, ignore_errors=True)


def installed_python_kernel(kernels: Path, kernel_name: str) -> str:
    """The interpreter of an installed Python kernelspec ("" = the server's own); InvalidRequest if none."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    manager.kernel_dirs = [str(kernels), *manager.kernel_dirs]
    try:
        spec = manager.get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise InvalidRequest(f"Invalid imageId: no kernelspec named '{kernel_name}' is installed.") from None
    if (spec.language or "").lower() != "python" or not spec.argv:
        raise InvalidRequest(f"Invalid imageId: kernelspec '{kernel_name}' is not a Python kernel.")
    first = spec.argv[0]
    # jupyter_client runs a kernel whose argv starts with a bare "python" in the server's interpreter.
    return first if os.path.isabs(first) else ""
