"""A real S3 server for tests: moto's threaded server on 127.0.0.1 (a free port), the pattern
DVC's own S3 plugin uses in its test fixtures, plus what the fault tests need: stopping and
restarting it on the same port (its buckets live in this process and survive), IAM
authentication switched on, and uploads held after the first N so a push can be killed halfway.

DVC reaches the server over HTTP, like any S3 client; nothing of DVC is mocked. Buckets can
be emptied and copied on the server, so tests can share one push and start from its state."""

from __future__ import annotations

import json
import threading
import urllib.request
from contextlib import contextmanager
from typing import Iterator

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                           create_backend_app)
from werkzeug.serving import make_server

# Any key pair works while authentication is off (moto's default); the fault test for bad
# credentials switches it on and makes an IAM user instead.
KEY_ID, SECRET = "testing", "testing"
REGION = "us-east-1"


class UploadGate:
    """WSGI middleware: lets the first ``allow`` object uploads (PUT) through, holds every
    later one until ``release``, then answers it 503 without storing it."""

    def __init__(self, app):
        self.app = app
        self.allow: int | None = None
        self.passed = 0
        self.held = threading.Event()
        self.released = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if self.allow is not None and environ["REQUEST_METHOD"] == "PUT" \
                and not environ.get("PATH_INFO", "").startswith("/moto-api"):
            with self.lock:
                hold = self.passed >= self.allow
                self.passed += not hold
            if hold:
                self.held.set()
                self.released.wait()
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"held by the test"]
        return self.app(environ, start_response)


class QuietHandler(MotoRequestHandler):
    def log_request(self, *args) -> None:  # no line per request on stderr
        pass


class S3Server(ThreadedMotoServer):
    """moto's ThreadedMotoServer that keeps its port across ``stop``/``start``."""

    def __init__(self, port: int = 0) -> None:
        super().__init__("127.0.0.1", port, verbose=False)
        self.gate: UploadGate | None = None
        self.running = False

    def _server_entry(self) -> None:
        self.gate = UploadGate(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, self.gate, True,
                                   request_handler=QuietHandler)
        self._port = self._server.server_address[1]  # a restart binds the same port
        self._server_ready_event.set()
        self._server.serve_forever()

    changes = 0  # starts and stops of any server: connections made before one are stale

    def start(self) -> None:
        super().start()
        self.running = True
        S3Server.changes += 1

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.released.set()
        super().stop()
        self._server.server_close()
        self.running = False
        S3Server.changes += 1

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def _post(self, path: str, body: bytes = b"") -> dict:
        with urllib.request.urlopen(urllib.request.Request(
                self.url + path, data=body, method="POST",
                headers={"Content-Type": "text/plain"})) as answer:
            return json.loads(answer.read() or b"{}")

    def reset(self) -> None:
        """Every bucket and IAM user gone, authentication off, no upload held."""
        self._post("/moto-api/reset")
        self.auth_off()

    def auth_off(self) -> None:
        """Authentication off (any key pair works again), no upload held; buckets kept."""
        self._post("/moto-api/reset-auth", b"inf")
        self.gate.allow, self.gate.passed = None, 0
        self.gate.held.clear()
        self.gate.released.clear()

    def client(self, service: str = "s3", key_id: str = KEY_ID, secret: str = SECRET):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def iam_user(self, bucket: str) -> tuple[str, str]:
        """An IAM user allowed everything on ``bucket``, then authentication on: from now on
        only its key pair is accepted. Returns (key id, secret)."""
        iam = self.client("iam")
        iam.create_user(UserName="colleague")
        iam.put_user_policy(UserName="colleague", PolicyName="bucket", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*",
                           "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
        key = iam.create_access_key(UserName="colleague")["AccessKey"]
        self._post("/moto-api/reset-auth", b"0")
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextmanager
    def uploads_held_after(self, allow: int) -> Iterator[UploadGate]:
        """Let ``allow`` uploads through and hold the rest until the block ends."""
        self.gate.allow, self.gate.passed = allow, 0
        self.gate.held.clear()
        self.gate.released.clear()
        try:
            yield self.gate
        finally:
            self.gate.released.set()
            self.gate.allow = None

    def keys(self, bucket: str, key_id: str = KEY_ID, secret: str = SECRET) -> dict[str, int]:
        """Every object of ``bucket``: key -> size."""
        found: dict[str, int] = {}
        for page in self.client("s3", key_id, secret).get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
        return found

    def objects(self, bucket: str) -> dict[str, str]:
        """Every object of ``bucket``: key -> ETag (its MD5)."""
        found: dict[str, str] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found.update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
        return found

    def empty(self, bucket: str) -> None:
        """Every object of ``bucket`` deleted (the bucket stays)."""
        keys = [{"Key": key} for key in self.objects(bucket)]
        for start in range(0, len(keys), 1000):  # S3 deletes at most 1000 keys a request
            self.client().delete_objects(Bucket=bucket, Delete={"Objects": keys[start:start + 1000]})

    def mirror(self, source: str, bucket: str) -> None:
        """``bucket`` made to hold exactly ``source``'s objects, copied on the server (no
        bytes through the client); objects already equal are left alone."""
        want, have = self.objects(source), self.objects(bucket)
        client = self.client()
        extra = [{"Key": key} for key in have if key not in want]
        if extra:
            client.delete_objects(Bucket=bucket, Delete={"Objects": extra})
        for key, etag in want.items():
            if have.get(key) != etag:
                client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": source, "Key": key})
