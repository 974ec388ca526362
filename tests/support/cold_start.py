"""Fresh Lambda containers, each forked from an interpreter that has just finished a container's init.

A Lambda container starts in two phases: *init* (the runtime imports ``handler``) and then one
invocation after another. A test of a cold start needs a fresh interpreter for the invocations, not
for the import of ``handler``, which is the same for every container: ``import handler`` loads
cognite-sdk, and that import alone cost 1.5-2.5 s of CPU per test (most of these tests' cost).

So one *template* process per test process does the init once (``import handler`` and the Lambda
context class, nothing else: no test code, no boto3, no Powertools) and forks a child per container.
The child is the state a real container is in after its init, with the test's environment, stdin,
stdout and stderr; it runs the test's code as ``python -c`` would and exits. What it imports during the
invocations (``sys.modules``), prints and answers is its own. ``import handler`` starts no thread and
reads no setting, so the fork loses nothing; the tests of the import itself
(``test_importing_handler_loads_nothing_of_the_lambda_path``) still start a new interpreter.
"""

from __future__ import annotations

import atexit
import json
import select
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

INIT = "import handler\nfrom awslambdaric.lambda_context import LambdaContext\n"
"""A container's init phase: what every forked container has imported before its first invocation."""

_TEMPLATE = (
    INIT
    + r"""
import json as _json, os as _os, signal as _signal, sys as _sys, traceback as _traceback

def _container(request):
    for fd, path, flags in ((0, request["stdin"], _os.O_RDONLY), (1, request["stdout"], _os.O_WRONLY),
                            (2, request["stderr"], _os.O_WRONLY)):
        opened = _os.open(path, flags)
        _os.dup2(opened, fd)
        _os.close(opened)
    _sys.stdin = open(0, closefd=False)
    _sys.stdout = open(1, "w", closefd=False)
    _sys.stderr = open(2, "w", closefd=False)
    _os.environ.clear()
    _os.environ.update(request["env"])
    _signal.alarm(request["timeout"])  # its default action ends the container: a hang cannot outlive the test
    code = 0
    try:
        exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        _traceback.print_exc()
        code = 1
    _sys.stdout.flush()
    _sys.stderr.flush()
    _os._exit(code)

for _line in _sys.stdin:
    _request = _json.loads(_line)
    _sys.stdout.flush()
    _pid = _os.fork()
    if _pid == 0:
        _container(_request)
    _, _status = _os.waitpid(_pid, 0)
    print(_json.dumps({"returncode": _os.waitstatus_to_exitcode(_status)}), flush=True)
"""
)

_template: subprocess.Popen[str] | None = None


def _started_template() -> subprocess.Popen[str]:
    global _template
    if _template is None or _template.poll() is not None:
        _template = subprocess.Popen(
            [sys.executable, "-c", _TEMPLATE], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        atexit.register(_stop, _template)
    return _template


def _stop(template: subprocess.Popen[str]) -> None:
    template.kill()
    template.wait()


def run_in_container(
    code: str, *, env: Mapping[str, str], input: str = "", timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a fresh container after its init (``INIT`` already run), as ``subprocess.run``
    with ``capture_output=True, text=True`` would answer."""
    template = _started_template()
    assert template.stdin is not None
    assert template.stdout is not None
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / name for name in ("stdin", "stdout", "stderr")}
        paths["stdin"].write_text(input)
        paths["stdout"].touch()
        paths["stderr"].touch()
        request = {"code": code, "env": dict(env), "timeout": timeout, **{k: str(p) for k, p in paths.items()}}
        template.stdin.write(json.dumps(request) + "\n")
        template.stdin.flush()
        ready, _, _ = select.select([template.stdout], [], [], timeout + 10)
        if not ready:
            template.kill()
            raise subprocess.TimeoutExpired(["python", "-c", code], timeout)
        answer = template.stdout.readline()
        assert answer, "the container template ended (its stderr is the test run's)"
        returncode = json.loads(answer)["returncode"]
        return subprocess.CompletedProcess(
            ["python", "-c", code], returncode, paths["stdout"].read_text(), paths["stderr"].read_text()
        )
