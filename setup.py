"""Package build hook: bring the dashboard's browser libraries from npm into the package.

`pip install .` and `pip install -e .` run `build_py`, which first makes sure
`gateway/static/vendor/` holds the files listed in `VENDOR_FILES` (running `npm ci` from
`package-lock.json` when `node_modules/` is missing), so the installed gateway serves them
offline. Third-party browser code is never committed (`.gitignore`); everything else about
the project is in `pyproject.toml`. By hand: `python setup.py vendor`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
VENDOR_DIR = Path("gateway/static/vendor")
# node_modules path -> file name under VENDOR_DIR
VENDOR_FILES = {
    "socket.io-client/dist/socket.io.min.js": "socket.io.min.js",
}


def vendor(root: Path = ROOT) -> list[Path]:
    """Copy the browser libraries into the source tree; return their paths relative to root."""
    modules = root / "node_modules"
    missing = [src for src in VENDOR_FILES if not (modules / src).is_file()]
    if missing and (root / "package-lock.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            if all((root / VENDOR_DIR / name).is_file() for name in VENDOR_FILES.values()):
                return [VENDOR_DIR / name for name in VENDOR_FILES.values()]  # e.g. from an sdist
            raise RuntimeError("npm is required to build the dashboard's vendor files")
        cmd = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
        subprocess.run(cmd, cwd=root, check=True)  # noqa: S603 - fixed argv, no shell
    out = []
    for src, name in VENDOR_FILES.items():
        dest = root / VENDOR_DIR / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules / src, dest)
        out.append(VENDOR_DIR / name)
    return out


class BuildPyWithVendor(build_py):  # type: ignore[misc]  # setuptools is untyped
    """`build_py` that vendors the browser libraries first (and into the build dir)."""

    def run(self) -> None:
        files = vendor()
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs serve the source tree, where the files now are
        for rel in files:  # package_data may have been computed before the files existed
            target = Path(self.build_lib) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, target)


class VendorCommand(Command):  # type: ignore[misc]
    """`python setup.py vendor`: only fetch and copy the browser libraries."""

    description = "copy npm browser libraries into gateway/static/vendor"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        for rel in vendor():
            print(f"vendored {rel}")


setup(cmdclass={"build_py": BuildPyWithVendor, "vendor": VendorCommand})
