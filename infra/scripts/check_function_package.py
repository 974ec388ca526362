"""Check that what is deployed imports and runs where it is deployed to, from nothing but its own files.

    python infra/scripts/check_function_package.py --venv .venv-infra/runtime \\
        [--zip dist/lambda.zip] [--cognite-folder infra/cognite/modules/workflow_retry/functions/fn_workflow_retry]

1. A clean virtual environment (no pip, nothing installed: only the standard library) is (re)created.
2. AWS Lambda: the zip is unpacked to a folder that goes first on ``sys.path``, as Lambda's /var/task
   does; ``handler`` is imported, ``handler.lambda_handler`` and ``handler.handle`` must be functions,
   and every module of the ``workflow_retry`` package must import (the Lambda-only modules are
   imported lazily by the handler, so importing ``handler`` alone would not prove they are packaged).
3. Cognite Functions: with the same dependencies (the zip's, i.e. requirements.txt), cognite-sdk's own
   ``validate_function_folder`` checks the Cognite build folder (the ``handle`` signature, then an
   import of handler.py in a separate process), and ``handler`` must come from that folder.

Standard library only; the checks run with the clean environment's interpreter in isolated mode.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ZIP = REPO_ROOT / "dist/lambda.zip"
DEFAULT_COGNITE_FOLDER = REPO_ROOT / "infra/cognite/modules/workflow_retry/functions/fn_workflow_retry"

LAMBDA_CHECK = """
import importlib, inspect, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import handler
for name in ("lambda_handler", "handle"):
    if not inspect.isfunction(getattr(handler, name, None)):
        sys.exit(f"handler.{name} is not a function")
import workflow_retry
modules = [info.name for info in pkgutil.walk_packages(workflow_retry.__path__, "workflow_retry.")]
for name in modules:
    importlib.import_module(name)
outside = [m.__name__ for m in (handler, workflow_retry) if not m.__file__.startswith(sys.argv[1])]
if outside:
    sys.exit(f"imported from outside the package: {outside}")
print(f"lambda: handler.lambda_handler and handler.handle import; {len(modules)} workflow_retry modules import")
"""

COGNITE_CHECK = """
import sys
folder, dependencies = sys.argv[1], sys.argv[2]
sys.path.insert(0, dependencies)
from cognite.client._api.functions import validate_function_folder
validate_function_folder(root_path=folder, function_path="handler.py", skip_folder_validation=False)
sys.path.insert(0, folder)
import handler
if not handler.__file__.startswith(folder):
    sys.exit(f"handler was imported from {handler.__file__}, not from the Cognite folder")
print(f"cognite: validate_function_folder passed on {folder}")
"""


def create_clean_venv(path: Path) -> Path:
    """A new virtual environment with nothing in it; returns its interpreter."""
    if path.exists():
        shutil.rmtree(path)
    venv.EnvBuilder(with_pip=False, system_site_packages=False, clear=True).create(path)
    return path / "bin" / "python"


def run_check(python: Path, code: str, *args: str) -> str | None:
    # -I: no PYTHONPATH, no user site-packages, no current directory on sys.path. -B: write no byte
    # code, as on Lambda's read-only /var/task (the package brings its own).
    completed = subprocess.run([str(python), "-I", "-B", "-c", code, *args], check=False)
    return None if completed.returncode == 0 else f"exit code {completed.returncode}"


def check(venv_path: Path, zip_path: Path, cognite_folder: Path) -> list[str]:
    """Run both checks; returns the failures (empty when all passed)."""
    python = create_clean_venv(venv_path)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lambda-task-") as task:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(task)
        if error := run_check(python, LAMBDA_CHECK, task):
            failures.append(f"the Lambda zip {zip_path} does not import cleanly ({error})")
        if not (cognite_folder / "handler.py").is_file():
            failures.append(f"no Cognite function folder at {cognite_folder} (run build_function_folder.py)")
        elif error := run_check(python, COGNITE_CHECK, str(cognite_folder.resolve()), task):
            failures.append(f"validate_function_folder rejected {cognite_folder} ({error})")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True, help="where to (re)create the clean environment")
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--cognite-folder", type=Path, default=DEFAULT_COGNITE_FOLDER)
    args = parser.parse_args(argv)
    failures = check(args.venv.resolve(), args.zip.resolve(), args.cognite_folder.resolve())
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
