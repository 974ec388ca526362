"""moto's server on a free loopback port, with the environment real boto3 needs to reach it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

REGION = "eu-west-1"


class SerialMotoServer(ThreadedMotoServer):
    """moto answering one request at a time (HTTP/1.0, a connection per request).

    moto checks a DynamoDB condition and then writes, without a lock: two concurrent conditional puts
    can both succeed, which DynamoDB never allows. Serving requests one by one makes each conditional
    write atomic again, for tests of concurrent invocations.
    """

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(self._ip_address, self._port, app, False, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@contextmanager
def moto_server(*, serial: bool = True) -> Iterator[str]:
    """Start moto, point boto3 at it (``AWS_ENDPOINT_URL``, test credentials); yields the endpoint.

    ``serial`` (the default): one request at a time, so that concurrent conditional writes are atomic
    as in DynamoDB (see :class:`SerialMotoServer`); the tests of concurrent invocations rely on it.
    """
    server = (SerialMotoServer if serial else ThreadedMotoServer)(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ENDPOINT_URL", endpoint)
            env.setenv("AWS_DEFAULT_REGION", REGION)
            env.setenv("AWS_REGION", REGION)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.delenv("AWS_PROFILE", raising=False)
            env.delenv("AWS_SESSION_TOKEN", raising=False)
            yield endpoint
    finally:
        server.stop()
