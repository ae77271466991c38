#!/usr/bin/env python3
"""The web app of tests/browser.rs (Python 3 stdlib only), run by devserve behind --proxy.

It runs in the test's temp dir and reads, at start only (so a "save" shows only once a new
generation runs):
- version.txt: the version its pages show. `crash` makes it exit 1 at start (a crash before it
  is ready).
- style.css: what /style.css answers (optional).
APP_START_DELAY_MS delays binding $PORT (a window in which the new generation is starting and
the old one still serves). Every request is logged on stderr as `app: gen=N GET /path`, on the
same pipe as devserve's JSON events, so their order is the order things happened.

Routes: / (the page, which records each load in sessionStorage `loads`), /nobody (HTML without
</body>), /gz (gzip-encoded HTML when the request accepts gzip), /gz-always (gzip-encoded
whatever was asked), /json, /style.css, /no-shared-worker (the page, with `SharedWorker` removed
before devserve's client runs), /frames?src=URL (a page framing URL that collects the frames'
reports in `window.frameReports`; `&gz=1` sends it gzip-encoded, so devserve leaves it without a
client), /frame-child (posts `typeof window.__devserve` to its parent once loaded), /secret.js
(JavaScript that sets `window.appSecret`: what a page on another site must not be able to include).
"""

import gzip
import http.server
import json
import os
import sys
import time
import urllib.parse
from html import escape

GEN = os.environ.get("DEVSERVE_GENERATION", "0")


def log(text):
    """One line in one write(2): print() writes the text and the newline apart, and a line of
    devserve's on the shared pipe could land between them."""
    os.write(2, (text + "\n").encode())


def read(name, default):
    try:
        with open(name, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


VERSION = read("version.txt", "none")
STYLE = read("style.css", "")
if VERSION == "crash":
    log(f"app: gen={GEN} crashing on purpose")
    sys.exit(1)

PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>version {VERSION}</title>
<link rel="stylesheet" href="/style.css"></head>
<body><h1 id="version">{VERSION}</h1><p id="gen">{GEN}</p>
<script>
(function () {{
  var loads = JSON.parse(sessionStorage.getItem('loads') || '[]');
  loads.push({{ version: {json.dumps(VERSION)}, gen: {GEN}, t: performance.timeOrigin }});
  sessionStorage.setItem('loads', JSON.stringify(loads));
}})();
</script>
</body></html>
"""

NO_SHARED_WORKER = PAGE.replace("<head>", "<head><script>window.SharedWorker = undefined;</script>", 1)

FRAME_CHILD = """<!doctype html><html><head><title>child</title></head><body><p>child</p>
<script>
addEventListener('load', function () {
  parent.postMessage({ frameClient: typeof window.__devserve }, '*');
});
</script>
</body></html>
"""


def frames_page(src):
    return f"""<!doctype html><html><head><title>frames</title></head><body>
<script>
window.frameReports = [];
addEventListener('message', function (event) {{
  if (event.data && event.data.frameClient !== undefined) window.frameReports.push(event.data.frameClient);
}});
</script>
<iframe id="frame" src="{escape(src, quote=True)}"></iframe>
</body></html>
"""


NOBODY = f"<!doctype html><html><head><title>nobody</title></head><p id=\"version\">{VERSION}</p>"
GZ_PAGE = f"<!doctype html><html><head><title>gz</title></head><body><p id=\"version\">gz {VERSION}</p></body></html>"
SECRET_JS = 'window.appSecret = "s3cret";\n'
JSON_BODY = json.dumps({"version": VERSION, "html": "<p>not a page</p></body>"})


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body, content_type, encoding=None):
        data = body.encode() if isinstance(body, str) else body
        if encoding == "gzip":
            data = gzip.compress(data, mtime=0)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        accepts_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        log(f"app: gen={GEN} GET {self.path}")
        html = "text/html; charset=utf-8"
        if path == "/":
            self.answer(PAGE, html)
        elif path == "/nobody":
            self.answer(NOBODY, html)
        elif path == "/gz":
            self.answer(GZ_PAGE, html, "gzip" if accepts_gzip else None)
        elif path == "/gz-always":
            self.answer(GZ_PAGE, html, "gzip")
        elif path == "/no-shared-worker":
            self.answer(NO_SHARED_WORKER, html)
        elif path == "/frames":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            gz = "gzip" if query.get("gz") == ["1"] else None
            self.answer(frames_page(query.get("src", ["/frame-child"])[0]), html, gz)
        elif path == "/frame-child":
            self.answer(FRAME_CHILD, html)
        elif path == "/json":
            self.answer(JSON_BODY, "application/json")
        elif path == "/secret.js":
            self.answer(SECRET_JS, "text/javascript")
        elif path == "/style.css":
            self.answer(STYLE, "text/css")
        else:
            self.send_error(404)


time.sleep(int(os.environ.get("APP_START_DELAY_MS", "0")) / 1000)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
log(f"app: gen={GEN} serving version={VERSION} port={os.environ['PORT']}")
server.serve_forever()
