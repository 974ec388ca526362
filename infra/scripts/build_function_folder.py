"""Build a Cognite Function code folder from the repository's own files.

The deployed code is exactly ``handler.py``, the ``workflow_retry`` package and ``requirements.txt``:
nothing in git duplicates them, and nothing else (tests, emulator, bench, dev files) is deployed.

    python infra/scripts/build_function_folder.py            # the Toolkit module's code folder
    python infra/scripts/build_function_folder.py --dest build/cognite_function --deploy-config

``--deploy-config`` also copies ``function_config.yaml`` and ``schedules/`` for the deploy-functions-oidc
action, which uploads its whole ``function_folder`` and reads the schedule file from inside it.
Standard library only: it runs with any Python 3.11+.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLKIT_FUNCTION_FOLDER = REPO_ROOT / "infra/cognite/modules/workflow_retry/functions/fn_workflow_retry"
CODE_FILES = ("handler.py", "requirements.txt")
CODE_PACKAGES = ("workflow_retry",)
DEPLOY_CONFIG = ("function_config.yaml", "schedules")
# Byte code and editor leftovers never belong in a deployment.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*.swp", "*~")


def build_function_folder(dest: Path, *, source: Path = REPO_ROOT, deploy_config: bool = False) -> list[Path]:
    """Replace ``dest`` with a fresh copy of the function's code; returns the top-level entries copied."""
    dest = dest.resolve()
    if dest in (source.resolve(), *source.resolve().parents):
        raise ValueError(f"refusing to replace {dest}: it contains the source tree")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    names = [*CODE_FILES, *CODE_PACKAGES, *(DEPLOY_CONFIG if deploy_config else ())]
    copied: list[Path] = []
    for name in names:
        origin = source / name
        if origin.is_dir():
            shutil.copytree(origin, dest / name, ignore=IGNORED)
        elif origin.is_file():
            shutil.copy2(origin, dest / name)
        else:
            raise FileNotFoundError(f"{origin} is missing: the function cannot be built without it")
        copied.append(dest / name)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=TOOLKIT_FUNCTION_FOLDER, help="folder to (re)create")
    parser.add_argument("--deploy-config", action="store_true", help="also copy function_config.yaml and schedules/")
    args = parser.parse_args(argv)
    copied = build_function_folder(args.dest, deploy_config=args.deploy_config)
    print(f"built {args.dest} from: {', '.join(path.name for path in copied)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
