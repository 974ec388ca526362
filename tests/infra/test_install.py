"""`pip install .` gives the `workflow-retry` command, and pyproject.toml agrees with requirements.txt.

The install runs in a new, empty virtual environment from a copy of the files a source distribution
holds (pyproject.toml, README.md, the package), so the working tree gets no build/ or egg-info
leftovers. It installs offline from a wheelhouse of requirements.txt's pins, their dependencies and the
build backend, kept in pytest's cache between runs (``.pytest_cache``; ``make clean`` removes it): the
first run downloads it, later runs reach no index at all (resolving the declared ranges against the live
index took most of the test's minute or more, and its answer changed whenever a package had a release).
``--no-index`` still makes pip resolve every declared dependency and build the package in an isolated
build environment, as for a user; the wheelhouse only holds the versions the suite was tested with.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
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


def _build_requires() -> list[str]:
    return list(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["build-system"]["requires"])


@pytest.fixture
def wheelhouse(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Wheels of requirements.txt (pins and their dependencies) and of the build backend, made once per
    requirements.txt and build-system (pytest's cache, when it is on; else this test's own folder)."""
    requirements = REPO_ROOT / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes() + repr(_build_requires()).encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir(f"wheelhouse-{key}") if cache is not None else tmp_path / "wheelhouse"
    done = folder / ".complete"
    if not done.exists():
        made = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"),
                *("--wheel-dir", folder, "-r", requirements, *_build_requires()),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert made.returncode == 0, made.stderr[-3000:]
        done.touch()
    return folder


@pytest.mark.slow
def test_pip_install_in_a_clean_venv_gives_the_workflow_retry_command(tmp_path: Path, wheelhouse: Path) -> None:
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
        [
            *(bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"),
            *("--no-index", "--find-links", wheelhouse, source),
        ],
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
