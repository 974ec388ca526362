"""`pip install .` gives the `workflow-retry` command, and pyproject.toml agrees with requirements.txt.

The install runs in a new, empty virtual environment from a copy of the files a source distribution
holds (pyproject.toml, README.md, the package), so the working tree gets no build/ or egg-info
leftovers. pip's own cache is shared with other runs: the first run downloads, later ones do not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra.conftest import REPO_ROOT

EXECUTION_ID = "059edaa4-a17a-4102-910e-2c3591500cce"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt pins every package exactly: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {canonicalize_name(requirement.name): requirement for requirement in requirements}


def test_pyproject_declares_the_packages_of_requirements_txt_around_their_pins() -> None:
    pins, declared = _pins(), _declared()
    assert sorted(declared) == sorted(pins)
    for name, version in pins.items():
        assert declared[name].specifier.contains(version), f"{name}=={version} is outside {declared[name]}"


def test_pyproject_installs_only_the_package_and_the_command() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"workflow-retry": "workflow_retry.cli:main"}
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["include"] == ["workflow_retry", "workflow_retry.*"]


@pytest.mark.slow
def test_pip_install_in_a_clean_venv_gives_the_workflow_retry_command(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "workflow_retry", source / "workflow_retry", ignore=shutil.ignore_patterns("__pycache__")
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    install = subprocess.run(
        # --no-compile: byte-compiling the dependencies takes time and is not what is tested.
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-compile", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    # No CDF connection, no RETRY_* setting: what a user who just installed it has.
    clean_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    command = bin_dir / "workflow-retry"
    help_run = subprocess.run(
        [command, "--help"], capture_output=True, text=True, env=clean_env, cwd=tmp_path, timeout=120
    )
    assert help_run.returncode == 0, help_run.stderr
    assert help_run.stdout.startswith("usage: workflow-retry")
    for subcommand in ("retry", "sweep", "status", "emulator"):
        assert subcommand in help_run.stdout

    # The installed command runs the real CLI: missing settings are a clear error and exit code 2.
    retry_run = subprocess.run(
        [command, "retry", EXECUTION_ID], capture_output=True, text=True, env=clean_env, cwd=tmp_path, timeout=120
    )
    assert retry_run.returncode == 2
    assert "CDF_PROJECT" in retry_run.stderr

    # Only the package was installed: the tests, the emulator, the benchmarks and handler.py were not.
    site_packages = subprocess.run(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env,
    ).stdout.strip()
    installed = {path.name for path in Path(site_packages).iterdir()}
    assert "workflow_retry" in installed
    assert not {"tests", "emulator", "bench", "handler.py", "infra"} & installed
