"""Build the Cognite Toolkit module offline with `cdf build` and fail on what its insights report.

    .venv-infra/toolkit/bin/python infra/scripts/check_toolkit_build.py [--org-dir infra/cognite] [--out DIR]

`cdf build` exits 0 even when it lists errors, so this reads ``insights.csv`` in the build folder and
fails on every row of an error type (Error, ModelSyntaxError, ConsistencyError, FileReadError) and of a
warning type (Warning, ModelSyntaxWarning, IgnoredFileWarning: an unknown field such as ``envVar``
instead of ``envVars`` is only a warning, and would silently deploy a function without its settings).
Recommendations are shown, not failed. One code is tolerated: INVALID-REQUIREMENTS, the Toolkit's
pip-based check of requirements.txt, which needs a package index; `make package` installs the same
requirements.txt and fails on its own if they do not resolve.

Every ``config.<env>.yaml`` of the organization folder is built. Runs in the `.venv-infra/toolkit`
virtual environment (cognite-toolkit pinned in infra/requirements-toolkit.txt); needs no CDF project.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ORG_DIR = REPO_ROOT / "infra/cognite"
DEFAULT_OUT = REPO_ROOT / "build/infra/toolkit"
FAILING_TYPES = frozenset(
    {"Error", "ModelSyntaxError", "ConsistencyError", "FileReadError", "Warning", "ModelSyntaxWarning",
     "IgnoredFileWarning"}
)  # fmt: skip
TOLERATED_CODES = frozenset({"INVALID-REQUIREMENTS"})


def build(org_dir: Path, config: Path, build_dir: Path) -> list[dict[str, str]]:
    """Run `cdf build` for one config file; returns the rows of its insights.csv."""
    cdf = Path(sys.executable).parent / "cdf"
    command = [str(cdf), "build", "--config-yaml", config.name, "--build-dir", str(build_dir)]
    print(f"$ (cd {org_dir} && cdf {' '.join(command[1:])})", flush=True)
    env = dict(os.environ)
    # cognite-toolkit sends usage telemetry (Mixpanel) from every command unless it believes it runs
    # under pytest; this variable is its only switch. A check must not phone home.
    env["PYTEST_CURRENT_TEST"] = "infra-check (cognite-toolkit telemetry off)"
    completed = subprocess.run(command, cwd=org_dir, env=env, check=False, capture_output=True, text=True)
    insights = build_dir / "insights.csv"
    if completed.returncode != 0 or not insights.is_file():
        sys.stdout.write(completed.stdout[-4000:])
        sys.stderr.write(completed.stderr[-4000:])
        return [{"insight_type": "Error", "code": "BUILD-FAILED", "message": f"exit {completed.returncode}"}]
    with insights.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def check(org_dir: Path, out_dir: Path) -> list[str]:
    """Build every config.<env>.yaml; returns one line per failing insight (empty when clean)."""
    configs = sorted(org_dir.glob("config.*.yaml"))
    if not configs:
        return [f"no config.<env>.yaml in {org_dir}"]
    failures: list[str] = []
    for config in configs:
        env_name = config.name.removeprefix("config.").removesuffix(".yaml")
        rows = build(org_dir, config, out_dir / env_name)
        for row in rows:
            line = f"[{env_name}] {row.get('insight_type')} {row.get('code')}: {row.get('message')}"
            where = row.get("source_file")
            line += f" ({where}{':' + row['line'] if row.get('line') else ''})" if where else ""
            if row.get("code") in TOLERATED_CODES:
                print(f"tolerated: {line}")
            elif row.get("insight_type") in FAILING_TYPES:
                failures.append(line)
            else:
                print(f"note: {line}")
        print(f"[{env_name}] {len(rows)} insight(s)", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--org-dir", type=Path, default=DEFAULT_ORG_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folders go here, one per env")
    args = parser.parse_args(argv)
    failures = check(args.org_dir.resolve(), args.out.resolve())
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if not failures:
        print(f"OK: {args.org_dir} builds without errors or warnings")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
