"""A git smart-HTTP server on 127.0.0.1 that checks the token, as GitHub does: ``git http-backend`` (CGI).

Every request must carry ``Authorization: basic base64("x-access-token:TOKEN")`` -- the header
``actions/checkout`` and squals send. An unknown or missing token gets 401; a token with only ``read``
may fetch, and its push gets 403 with GitHub's words on the ``remote:`` line. Every request is recorded
(method, path, the role it was given, how many Authorization headers it carried) for the tests to assert.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.local_http import LocalServer, QuietHandler

#: The user name GitHub expects with an installation or Actions token.
TOKEN_USER = "x-access-token"


def basic_header(token: str) -> str:
    """The header value ``actions/checkout`` persists for ``token``."""
    return "basic " + base64.b64encode(f"{TOKEN_USER}:{token}".encode()).decode()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    role: str  # "write", "read" or "refused"
    authorizations: int


class GitHttpServer(LocalServer):
    """Serve the bare repositories under ``root`` at ``url``/<name>; ``tokens`` maps a token to its role."""

    def __init__(self, root: Path, tokens: Mapping[str, str]) -> None:
        self.root = root
        self.tokens = dict(tokens)
        self.seen: list[Seen] = []
        server = self

        class Handler(QuietHandler):
            def _serve(self) -> None:
                body = self._body()
                auths = self.headers.get_all("Authorization") or []
                role = server.role(auths)
                pushing = "git-receive-pack" in self.path
                server.seen.append(Seen(self.command, self.path, role, len(auths)))
                if role == "refused":
                    challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'}
                    self._answer(401, challenge, b"Invalid username or token.\n")
                elif pushing and role != "write":
                    repo = urlsplit(self.path).path.split("/")[1]
                    said = f"Permission to {repo} denied to github-actions[bot].\n".encode()
                    self._answer(403, {}, said)
                else:
                    self._cgi(body)

            do_GET = do_POST = _serve

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            return b"".join(chunks)
                        chunks.append(chunk)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
                self.reply(status, body, {"Content-Type": "text/plain", **headers})

            def _cgi(self, body: bytes) -> None:
                parts = urlsplit(self.path)
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REMOTE_USER": TOKEN_USER,
                    "REMOTE_ADDR": "127.0.0.1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": parts.path,
                    "QUERY_STRING": parts.query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                }
                done = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
                )
                out = done.stdout
                ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := out.find(sep)) >= 0]
                cut, width = min(ends) if ends else (len(out), 0)
                head, payload = out[:cut], out[cut + width :]
                status, headers = 200, {}
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.split()[0])
                    elif key:
                        headers[key.strip()] = value.strip()
                self._answer(status, headers, payload)

        super().__init__(Handler)

    def role(self, authorizations: list[str]) -> str:
        """The role of the one token sent; two headers (a persisted one and ours) are refused: ambiguous."""
        if len(authorizations) != 1:
            return "refused"
        scheme, _, value = authorizations[0].partition(" ")
        try:
            user, _, token = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "refused"
        if scheme.lower() != "basic" or user != TOKEN_USER:
            return "refused"
        return self.tokens.get(token, "refused")
