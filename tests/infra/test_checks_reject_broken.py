"""The offline checks of `make infra-check` can fail: broken copies of the deploy files are rejected.

Each test runs the same script `make infra-check` runs, with the same tools (.venv-infra), on a copy of
the repository's file with one deliberate mistake, and asserts that the check names that mistake. The
unmodified copies pass, so the failures come from the mistakes and not from the copying.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.conftest import SAM_TEMPLATE, TOOLKIT_ORG, load_script, run_script

pytestmark = pytest.mark.slow

build_function_folder = load_script("build_function_folder")
SCHEDULE = "modules/workflow_retry/functions/fn_workflow_retry.Schedule.yaml"
FUNCTION = "modules/workflow_retry/functions/fn_workflow_retry.Function.yaml"
FUNCTION_FOLDER = "modules/workflow_retry/functions/fn_workflow_retry"


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the template no longer contains exactly one {old!r}"
    return text.replace(old, new)


def unknown_event_type(template: str) -> str:
    return _replace_once(template, "          Type: SQS\n", "          Type: SQSQueue\n")


def wildcard_policy(template: str) -> str:
    statement = "              - Sid: WriteOwnLogs\n"
    anything = '              - Sid: Anything\n                Effect: Allow\n                Action: "*"\n'
    return _replace_once(template, statement, anything + '                Resource: "*"\n' + statement)


def out_of_range_visibility_timeout(template: str) -> str:
    return _replace_once(template, "      VisibilityTimeout: 720\n", "      VisibilityTimeout: 99999\n")


@pytest.mark.parametrize(
    ("break_template", "expected"),
    [
        pytest.param(unknown_event_type, "Event Type is: SQSQueue", id="unknown-event-type"),
        pytest.param(wildcard_policy, 'Ensure no IAM policies documents allow "*"', id="wildcard-policy"),
        pytest.param(out_of_range_visibility_timeout, "99999 is greater than the maximum of 43200", id="out-of-range"),
    ],
)
def test_sam_check_rejects(aws_tools_python, tmp_path, break_template: Callable[[str], str], expected: str):
    broken = tmp_path / "template.yaml"
    broken.write_text(break_template(SAM_TEMPLATE.read_text()))
    result = run_script(aws_tools_python, "check_sam_template", "--template", str(broken), "--out", str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "FAILED" in result.stderr
    assert expected in output


def test_sam_check_passes_the_unmodified_copy(aws_tools_python, tmp_path):
    copy = tmp_path / "template.yaml"
    shutil.copy(SAM_TEMPLATE, copy)
    result = run_script(aws_tools_python, "check_sam_template", "--template", str(copy), "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout


@pytest.fixture
def toolkit_copy(tmp_path: Path) -> Path:
    """A copy of the Toolkit organization folder, its function code folder built as `make` does."""
    org = tmp_path / "cognite"
    shutil.copytree(TOOLKIT_ORG, org, ignore=shutil.ignore_patterns("build", "fn_workflow_retry"))
    build_function_folder.build_function_folder(org / FUNCTION_FOLDER)
    return org


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(_replace_once(path.read_text(), old, new))


def test_toolkit_check_rejects_schedule_without_cron(toolkit_python, toolkit_copy, tmp_path):
    _edit(toolkit_copy / SCHEDULE, "cronExpression: '{{ sweep_cron }}'\n", "")
    result = run_script(toolkit_python, "check_toolkit_build", "--org-dir", str(toolkit_copy), "--out", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Missing required field: 'cronExpression'" in result.stderr


def test_toolkit_check_rejects_a_misspelt_field(toolkit_python, toolkit_copy, tmp_path):
    # Only a warning for cdf build, but the function would deploy without its environment variables.
    _edit(toolkit_copy / FUNCTION, "envVars:\n", "envVar:\n")
    result = run_script(toolkit_python, "check_toolkit_build", "--org-dir", str(toolkit_copy), "--out", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "'envVar' is not a known field" in result.stderr


def test_toolkit_check_rejects_a_missing_code_folder(toolkit_python, toolkit_copy, tmp_path):
    shutil.rmtree(toolkit_copy / FUNCTION_FOLDER)
    result = run_script(toolkit_python, "check_toolkit_build", "--org-dir", str(toolkit_copy), "--out", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISSING-REFERENCED-DIRECTORY" in result.stderr


def test_toolkit_check_passes_the_unmodified_copy(toolkit_python, toolkit_copy, tmp_path):
    result = run_script(toolkit_python, "check_toolkit_build", "--org-dir", str(toolkit_copy), "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def _package_check(tmp_path: Path, lambda_zip: Path, handler_edit: tuple[str, str] | None = None):
    """Run the package check on ``lambda_zip`` and a freshly built Cognite folder (optionally edited)."""
    folder = tmp_path / "fn"
    build_function_folder.build_function_folder(folder)
    if handler_edit:
        _edit(folder / "handler.py", *handler_edit)
    args = ["--venv", str(tmp_path / "venv"), "--zip", str(lambda_zip), "--cognite-folder", str(folder)]
    return run_script(Path(sys.executable), "check_function_package", *args)


def test_package_check_rejects_a_handle_cognite_cannot_call(lambda_zip, tmp_path):
    result = _package_check(tmp_path, lambda_zip, ("    data: object,\n", "    payload: object,\n"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "must be a subset of" in result.stderr
    assert "validate_function_folder rejected" in result.stderr


def test_package_check_rejects_a_package_missing_a_dependency(lambda_zip, tmp_path):
    stripped = tmp_path / "lambda.zip"
    with zipfile.ZipFile(lambda_zip) as source, zipfile.ZipFile(stripped, "w") as target:
        for info in source.infolist():
            if not info.filename.startswith("aws_lambda_powertools/"):
                target.writestr(info, source.read(info))
    result = _package_check(tmp_path, stripped)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No module named 'aws_lambda_powertools'" in result.stderr
    assert "does not import cleanly" in result.stderr


def test_package_check_passes_the_real_package(lambda_zip, tmp_path):
    result = _package_check(tmp_path, lambda_zip)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validate_function_folder passed" in result.stdout
