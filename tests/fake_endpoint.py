"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies and injectable failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeEndpoint:
    def __init__(self, respond: Callable[[dict[str, Any]], dict[str, Any]]):
        self.respond = respond  # request body -> reply message
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.fail_status = 500
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if server.fail_next:
                    server.fail_next -= 1
                    self.send_response(server.fail_status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "busy"}')
                    return
                reply = dict(server.respond(body))
                finish = reply.pop("finish_reason", "stop")  # a reply may say it was cut off ("length")
                payload = json.dumps(
                    {"choices": [{"message": {"role": "assistant", **reply}, "finish_reason": finish}]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.running = True

    def stop(self):
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.running = False
