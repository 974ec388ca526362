"""What is deployed: the Cognite function folder and the Lambda zip hold the code and nothing else."""

from __future__ import annotations

import filecmp
import importlib.util
import zipfile
from pathlib import Path

import pytest

from tests.infra.conftest import REPO_ROOT, load_script

build_function_folder = load_script("build_function_folder")
package_lambda = load_script("package_lambda")

NEVER_DEPLOYED = ("tests/", "emulator/", "bench/", "infra/", "docs/", ".venv", "Makefile", "pyproject.toml")


def _relative_files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def _source_files() -> set[str]:
    package = {
        f"workflow_retry/{path.relative_to(REPO_ROOT / 'workflow_retry').as_posix()}"
        for path in (REPO_ROOT / "workflow_retry").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    return {"handler.py", "requirements.txt", *package}


def test_function_folder_is_an_exact_copy_of_the_code(tmp_path):
    dest = tmp_path / "fn"
    build_function_folder.build_function_folder(dest)
    assert _relative_files(dest) == _source_files()
    for name in _source_files():
        assert filecmp.cmp(REPO_ROOT / name, dest / name, shallow=False), name


def test_function_folder_is_rebuilt_from_scratch(tmp_path):
    dest = tmp_path / "fn"
    dest.mkdir()
    (dest / "stale_module.py").write_text("old = True\n")
    build_function_folder.build_function_folder(dest)
    assert not (dest / "stale_module.py").exists()


def test_deploy_functions_oidc_folder_also_has_its_config(tmp_path):
    dest = tmp_path / "fn"
    build_function_folder.build_function_folder(dest, deploy_config=True)
    files = _relative_files(dest)
    assert {"function_config.yaml", "schedules/dev.yaml"} <= files
    assert files - _source_files() == {"function_config.yaml", *(f for f in files if f.startswith("schedules/"))}


def test_function_folder_refuses_to_replace_the_source_tree():
    with pytest.raises(ValueError, match="contains the source tree"):
        build_function_folder.build_function_folder(REPO_ROOT.parent)


def test_lambda_zip_is_reproducible_with_sorted_entries(tmp_path):
    folder = tmp_path / "staging"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg/b.py").write_text("B = 2\n")
    (folder / "pkg/a.py").write_text("A = 1\n")
    (folder / "handler.py").write_text("def lambda_handler(event, context): ...\n")
    first = package_lambda.write_zip(folder, tmp_path / "one.zip")
    second = package_lambda.write_zip(folder, tmp_path / "two.zip")
    assert first == second
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        assert archive.namelist() == ["handler.py", "pkg/a.py", "pkg/b.py"]
        assert archive.read("pkg/a.py") == b"A = 1\n"
        assert {info.external_attr >> 16 for info in archive.infolist()} == {0o100644}


@pytest.mark.slow
def test_built_lambda_zip_holds_code_and_dependencies_only(lambda_zip):
    with zipfile.ZipFile(lambda_zip) as archive:
        names = archive.namelist()
        assert "handler.py" in names
        code = {name for name in names if name.startswith("workflow_retry/") and "__pycache__/" not in name}
        assert code == {name for name in _source_files() if name.startswith("workflow_retry/")}
        assert archive.read("handler.py") == (REPO_ROOT / "handler.py").read_bytes()
        handler_pyc = archive.read("__pycache__/handler.cpython-311.pyc")
        total = sum(info.file_size for info in archive.infolist())
    assert not [name for name in names if name.startswith(NEVER_DEPLOYED)]
    # What requirements.txt pins is what is packaged.
    pins = [line.split("==") for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if "==" in line]
    for name, version in pins:
        dist_info = f"{name.replace('-', '_')}-{version}.dist-info/"
        assert any(entry.lower().startswith(dist_info.lower()) for entry in names), f"{name}=={version} missing"
    assert total < package_lambda.MAX_UNZIPPED_BYTES
    assert lambda_zip.stat().st_size < package_lambda.MAX_ZIPPED_BYTES
    # Byte code for the runtime, valid whatever the files' timestamps: unchecked-hash .pyc (PEP 552).
    assert handler_pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(handler_pyc[4:8], "little") == 0b01
    modules = [name for name in code if name.endswith(".py")]
    for module in modules:
        folder, _, stem = module.rpartition("/")
        assert f"{folder}/__pycache__/{stem[:-3]}.cpython-311.pyc" in names, module
    assert not [name for name in names if name.endswith(".pyc") and ".cpython-311." not in name]
