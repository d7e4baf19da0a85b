"""The evaluation notebook runs top to bottom on the shipped models without error.

Executed with nbclient on the ``python3`` kernel. jupyter_client finds that kernel spec
in the running environment (ipykernel's native kernel, or the spec ipykernel installs
into ``<venv>/share/jupyter/kernels``) and starts it with ``sys.executable`` when the
spec says plain ``python``. When no usable spec is found (or one found elsewhere on the
machine names another interpreter), ipykernel's own ``install`` writes one for *this*
interpreter into a temporary prefix, and JUPYTER_PATH points there for the test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "evaluation.ipynb"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def _spec_runs_this_python(spec) -> bool:
    """True when the spec would start a kernel on the running interpreter."""
    if not spec.argv:
        return False
    exe = spec.argv[0]
    if exe in {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}:
        return True  # jupyter_client swaps these for sys.executable
    try:
        return Path(exe).resolve() == Path(sys.executable).resolve() or os.path.samefile(exe, sys.executable)
    except OSError:
        return False


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch) -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if _spec_runs_this_python(spec):
            return "python3"
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    prefix = tmp_path / "kernel-prefix"
    install(kernel_name="python3", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert _spec_runs_this_python(spec), spec.argv
    return "python3"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "clear outputs before committing"


@pytest.mark.slow
def test_evaluation_notebook_runs(python3_kernel):
    if not (ROOT / "models" / "manifest.json").exists():
        pytest.skip("no shipped models (models/manifest.json)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=python3_kernel, timeout=600,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the PR, F-beta and confusion figures should render inline as PNG"
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.get("output_type") == "stream")
    assert "FALSE NEGATIVES" in text and "FALSE POSITIVES" in text
