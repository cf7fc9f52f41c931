"""The package's type information (PEP 561) as installed: the ``py.typed`` marker and the stub
of the extension module, which matches the extension (mypy's stubtest)."""
import pathlib
import subprocess
import sys

import pytest

import mpx

HERE = pathlib.Path(__file__).resolve().parent


def test_the_installed_package_ships_its_types():
    package = pathlib.Path(mpx.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_mpx.pyi").is_file()


def test_the_extension_stub_matches_the_extension():
    pytest.importorskip("mypy")
    allowlist = HERE.parent / "stubtest-allowlist.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "mpx._mpx", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
