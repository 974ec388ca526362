"""Build the AWS Lambda deployment zip: requirements.txt for the Lambda runtime, plus the function's code.

    python infra/scripts/package_lambda.py [--out dist/lambda.zip]

Dependencies are installed with pip for the runtime of infra/aws/template.yaml (CPython 3.11 on Linux
x86_64, binary wheels only), whatever machine builds the zip. The code is handler.py and the
workflow_retry package; tests, the emulator, bench and dev files are left out. The zip is
reproducible (sorted entries, fixed timestamps) and its size is reported and checked against Lambda's
limits. Standard library only (pip is run as a subprocess).
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_function_folder import CODE_PACKAGES, IGNORED  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "dist/lambda.zip"
# The Lambda runtime the template declares (Runtime: python3.11, Architectures: [x86_64]). It runs on
# Amazon Linux 2 (glibc 2.26): manylinux2014 (glibc 2.17) wheels, not manylinux_2_28 ones.
PYTHON_VERSION = "3.11"
PLATFORMS = ("manylinux2014_x86_64",)
# Lambda's limits for a zip uploaded through S3: 250 MB unzipped; 50 MB zipped for a direct upload.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
MAX_ZIPPED_BYTES = 50 * 1024 * 1024
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip's epoch: the same inputs give the same bytes


def install_requirements(requirements: Path, target: Path) -> None:
    """pip-install ``requirements`` into ``target`` for the Lambda runtime, wheels only."""
    platform_args = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        # --target ignores what the interpreter has installed; its packages' conflicts are not ours.
        "--no-warn-conflicts",
        "--root-user-action=ignore",
        "--no-compile",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        *platform_args,
        "--target",
        str(target),
        "--requirement",
        str(requirements),
    ]
    subprocess.run(command, check=True)
    # Console scripts are of no use in a function.
    shutil.rmtree(target / "bin", ignore_errors=True)


def compile_bytecode(folder: Path) -> bool:
    """Precompile every module for the runtime; False when this interpreter is not the runtime's version.

    Lambda's /var/task is read-only, so without .pyc files every cold start compiles every module it
    imports again: measured here, importing the handler's modules takes about 4 s without them and
    1.3 s with them. Unchecked-hash .pyc files (PEP 552) are used whatever the files' timestamps (the
    zip fixes them), and hold no build time.
    """
    if sys.version_info[:2] != tuple(int(part) for part in PYTHON_VERSION.split(".")):
        return False
    for cache in list(folder.rglob("__pycache__")):
        shutil.rmtree(cache)
    compiled = compileall.compile_dir(
        folder, quiet=1, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    if not compiled:  # a dependency may ship a file for another Python; Python then compiles it itself
        print(f"note: some files in {folder} could not be precompiled", file=sys.stderr)
    return True


def add_code(source: Path, target: Path) -> None:
    """Copy the function's own code (handler.py and its package) next to the dependencies."""
    shutil.copy2(source / "handler.py", target / "handler.py")
    for package in CODE_PACKAGES:
        if (target / package).exists():
            raise RuntimeError(f"a dependency installs a top-level '{package}': it would shadow ours")
        shutil.copytree(source / package, target / package, ignore=IGNORED)


def write_zip(folder: Path, out: Path) -> tuple[int, int, int]:
    """Zip ``folder``'s content reproducibly; returns (files, unzipped bytes, zipped bytes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    partial = out.with_suffix(".zip.partial")
    unzipped = 0
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = os.access(path, os.X_OK)
            info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            data = path.read_bytes()
            unzipped += len(data)
            archive.writestr(info, data, compresslevel=9)
    partial.replace(out)
    return len(files), unzipped, out.stat().st_size


def package(out: Path, source: Path = REPO_ROOT) -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory(prefix="lambda-package-") as staging:
        folder = Path(staging)
        install_requirements(source / "requirements.txt", folder)
        add_code(source, folder)
        if not compile_bytecode(folder):
            print(f"note: not Python {PYTHON_VERSION}: no precompiled byte code (slower cold starts)", file=sys.stderr)
        return write_zip(folder, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    files, unzipped, zipped = package(args.out.resolve())
    mib = 1024 * 1024
    print(f"{args.out}: {zipped / mib:.1f} MiB zipped, {unzipped / mib:.1f} MiB unzipped, {files} files")
    if unzipped > MAX_UNZIPPED_BYTES:
        print(f"FAILED: over Lambda's {MAX_UNZIPPED_BYTES // mib} MiB unzipped limit", file=sys.stderr)
        return 1
    if zipped > MAX_ZIPPED_BYTES:
        print(f"note: over {MAX_ZIPPED_BYTES // mib} MiB zipped: upload through S3 (sam deploy does)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
