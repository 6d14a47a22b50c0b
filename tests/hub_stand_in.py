"""A local stand-in for the Hugging Face hub's download API, enough for `snapshot_download`.

Serves, for each (repo type, repo id, commit) it holds:
    GET  /api/{models|datasets}/{repo_id}/revision/{commit}      repo info: sha and file list
    HEAD/GET /{repo_id}/resolve/{commit}/{path}                  a model's file
    HEAD/GET /datasets/{repo_id}/resolve/{commit}/{path}         a dataset's file
with the headers the client reads (X-Repo-Commit, ETag, Content-Length). Unknown revisions get
the hub's 404 with `X-Error-Code: RevisionNotFound`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class HubStandIn:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str, str], dict[str, bytes]] = {}  # (type, id, commit) => path => bytes
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_type: str, repo_id: str, commit: str, files: dict[str, bytes]) -> None:
        self.repos[(repo_type, repo_id, commit)] = files

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _not_found(self, code: str) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                body = json.dumps({"error": code}).encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def _route(self) -> tuple[str, str, str, str | None] | None:
                path = unquote(self.path.split("?")[0]).lstrip("/")
                if path.startswith("api/"):
                    kind, rest = path[4:].split("/", 1)
                    repo_id, commit = rest.split("/revision/", 1)
                    return kind.rstrip("s"), repo_id, commit, None
                repo_type = "model"
                if path.startswith("datasets/"):
                    repo_type, path = "dataset", path[len("datasets/"):]
                if "/resolve/" not in path:
                    return None
                repo_id, rest = path.split("/resolve/", 1)
                commit, file = rest.split("/", 1)
                return repo_type, repo_id, commit, file

            def _serve(self) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                route = self._route()
                if route is None:
                    return self._not_found("EntryNotFound")
                repo_type, repo_id, commit, file = route
                files = hub.repos.get((repo_type, repo_id, commit))
                if files is None:
                    return self._not_found("RevisionNotFound")
                if file is None:
                    body = json.dumps({"id": repo_id, "sha": commit,
                                       "siblings": [{"rfilename": name} for name in sorted(files)]}).encode()
                    content_type = "application/json"
                elif file in files:
                    body, content_type = files[file], "application/octet-stream"
                else:
                    return self._not_found("EntryNotFound")
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            do_GET = _serve
            do_HEAD = _serve

        return Handler
