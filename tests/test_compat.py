"""The torchvision guard of SPEC section 10."""

from __future__ import annotations

import subprocess
import sys


def test_import_invsolve_imports_deepinv_and_torchvision():
    code = (
        "import invsolve, invsolve._compat as c, deepinv, torchvision, torchvision.extension as e;"
        "print(c.TORCHVISION_SHIM_APPLIED, e._has_ops())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    applied, has_ops = out.stdout.split()
    # The shim is applied exactly when torchvision's compiled ops are missing, never otherwise.
    assert (applied == "True") == (has_ops == "False")


def test_shim_is_a_no_op_once_torchvision_is_imported():
    from invsolve._compat import ensure_torchvision_importable

    assert ensure_torchvision_importable() is False
