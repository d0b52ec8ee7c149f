#!/usr/bin/env python3
"""Self-check of bench/harbor_client.py against a recording registry on 127.0.0.1 (issue 24).

Asserts what the benchmark's Harbor clients put on the wire, as tests/wan_client.rs does for the
Rust twin: the unauthenticated ping, a token per request scope and its reuse by scope string,
Harbor's expiry rule, each generation's monolithic PUT (raw / re-encoded digest, 1.8.0 chunked
transfer encoding) and Harbor 2.9's chunk boundaries. scripts/bench-wan.sh runs it before
measuring; exit status 0 when every check holds.
"""

import datetime
import hashlib
import http.server
import json
import sys
import threading
import urllib.parse

import harbor_client as hc

STATE = "ab%2Fc%3D%3D"


class Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, expires_in):
        super().__init__(("127.0.0.1", 0), Handler)
        self.expires_in, self.seen, self.issued, self.uploads = expires_in, [], [], 0
        self.base = "http://127.0.0.1:%d" % self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def scopes_of(self, r):
        a = r["auth"] or ""
        return self.issued[int(a[len("Bearer tok-"):])] if a.startswith("Bearer tok-") else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body_len(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            n = 0
            while True:
                size = int(self.rfile.readline().strip(), 16)
                self.rfile.read(size + 2)
                n += size
                if size == 0:
                    return n
        return len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def answer(self, status, headers=(), body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_one(self):
        srv, path = self.server, urllib.parse.urlsplit(self.path).path
        n = self.body_len()
        if path == "/token":
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            srv.issued.append(q.get("scope", []))
            at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            t = "tok-%d" % (len(srv.issued) - 1)
            body = json.dumps({"token": t, "access_token": t, "expires_in": srv.expires_in,
                               "issued_at": at}).encode()
            return self.answer(200, [("Content-Type", "application/json")], body)
        srv.seen.append({"method": self.command, "target": self.path, "len": n,
                         "auth": self.headers.get("Authorization"),
                         "range": self.headers.get("Content-Range"),
                         "te": self.headers.get("Transfer-Encoding"),
                         "cl": self.headers.get("Content-Length"),
                         "ua": self.headers.get("User-Agent")})
        if path == "/v2/" and not self.headers.get("Authorization"):
            chal = 'Bearer realm="%s/token",service="recorder"' % srv.base
            return self.answer(401, [("WWW-Authenticate", chal)])
        if self.command == "HEAD":
            return self.answer(404)
        if self.command == "POST":
            srv.uploads += 1
            loc = "%s/u%d?_state=%s" % (path.rstrip("/"), srv.uploads, STATE)
            return self.answer(202, [("Location", loc)])
        if self.command == "PATCH":
            return self.answer(202, [("Location", "%s?_state=%s" % (path, STATE))])
        return self.answer(201 if self.command == "PUT" else 202)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one


def blob(data):
    return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "data": data}


def copy(rec, gen, repo, layers, chunk=0):
    counters = hc.Counters()
    c = hc.Client(gen, rec.base, "AKIDuser", "secret", counters)
    cfg = blob(json.dumps({"repo": repo}).encode())
    hc.copy_image(c, repo, "v1", [cfg] + [blob(l) for l in layers], b"{}", hc.MT_MANIFEST, chunk)
    c.close()
    return counters, cfg


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    # Scope per request, cache by scope string (1.10: one scope or none only; 2.x: any set).
    for gen in ("1.10", "2.0"):
        rec = Recorder(300)
        counters, _ = copy(rec, gen, "ns/a", [b"a" * 3000, b"b" * 2000])
        seen = rec.seen
        check((seen[0]["method"], seen[0]["target"], seen[0]["auth"]) == ("GET", "/v2/", None),
              "%s: the ping comes first, without credentials: %s" % (gen, seen[0]))
        check(len(seen) == 1 + 1 + 3 * 3 + 1, "%s: %d requests" % (gen, len(seen)))
        check(rec.issued == [["repository:ns/a:pull"], ["repository:ns/a:pull,push"]],
              "%s: tokens issued %s" % (gen, rec.issued))
        for r in seen[1:]:
            want = "pull" if r["method"] == "HEAD" else "pull,push"
            check(rec.scopes_of(r) == ["repository:ns/a:%s" % want],
                  "%s: %s %s carried %s" % (gen, r["method"], r["target"], rec.scopes_of(r)))
        check(counters.c["cache_hits"] == 9, "%s: cache hits %s" % (gen, counters.c))
        c = hc.Client(gen, rec.base, "AKIDuser", "secret", hc.Counters())
        before = len(rec.issued)
        for _ in range(2):
            c.mount_blob("ns/a", "sha256:" + "0" * 64, "ns/b")
        check(len(rec.issued) - before == (2 if gen == "1.10" else 1),
              "%s: a two-scope mount cached only by 2.x: %s" % (gen, rec.issued[before:]))
        check(rec.issued[-1] == ["repository:ns/a:pull", "repository:ns/b:pull,push"],
              "%s: mount scopes %s" % (gen, rec.issued[-1]))
        rec.shutdown()
    # Expiry: issued_at + expires_in - 10 s; expires_in = 10 is stale at once.
    for gen in ("1.10", "2.0"):
        rec = Recorder(10)
        copy(rec, gen, "ns/a", [b"c" * 1000])
        check(len(rec.issued) == len(rec.seen) - 1, "%s: one token per request when stale" % gen)
        rec.shutdown()
    # The monolithic PUT per generation.
    for gen in ("1.8", "1.10", "2.0", "2.9"):
        rec = Recorder(300)
        data = b"d" * 5000
        d = blob(data)["digest"]
        copy(rec, gen, "ns/a", [data])
        put = [r for r in rec.seen if r["method"] == "PUT" and d[7:] in r["target"]][0]
        query = put["target"].split("?", 1)[1]
        enc = d if gen in ("1.8", "1.10") else d.replace(":", "%3A")
        check(query == "_state=%s&digest=%s" % (STATE, enc), "%s: PUT query %s" % (gen, query))
        check(put["len"] == len(data), "%s: body %d" % (gen, put["len"]))
        check((put["te"] == "chunked") == (gen == "1.8") and (put["cl"] is None) == (gen == "1.8"),
              "%s: framing te=%s cl=%s" % (gen, put["te"], put["cl"]))
        rec.shutdown()
    # Harbor 2.9 copy-by-chunk at 100 KiB: 250 KiB = PATCH, PATCH, PUT; 50 KiB monolithic, no HEAD.
    rec = Recorder(300)
    big, small = b"e" * (250 << 10), b"f" * (50 << 10)
    _, cfg = copy(rec, "2.9", "ns/c", [big, small], chunk=100 << 10)
    lines = ["%s %s %s %d" % (r["method"], r["target"], r["range"] or "-", r["len"])
             for r in rec.seen]
    e = lambda b: blob(b)["digest"].replace(":", "%3A")
    want = [
        "GET /v2/ - 0",
        "HEAD /v2/ns/c/manifests/v1 - 0",
        "POST /v2/ns/c/blobs/uploads/ - 0",
        "PUT /v2/ns/c/blobs/uploads/u1?_state=%s&digest=%s - %d" % (STATE, e(cfg["data"]),
                                                                    len(cfg["data"])),
        "HEAD /v2/ns/c/blobs/%s - 0" % blob(big)["digest"],
        "POST /v2/ns/c/blobs/uploads/ - 0",
        "PATCH /v2/ns/c/blobs/uploads/u2?_state=%s 0-102399 102400" % STATE,
        "PATCH /v2/ns/c/blobs/uploads/u2?_state=%s 102400-204799 102400" % STATE,
        "PUT /v2/ns/c/blobs/uploads/u2?_state=%s&digest=%s 204800-255999 51200" % (STATE, e(big)),
        "POST /v2/ns/c/blobs/uploads/ - 0",
        "PUT /v2/ns/c/blobs/uploads/u3?_state=%s&digest=%s - 51200" % (STATE, e(small)),
        "PUT /v2/ns/c/manifests/v1 - 2",
    ]
    check(lines == want, "2.9 chunks:\n  got  %s\n  want %s" % ("\n       ".join(lines),
                                                               "\n       ".join(want)))
    rec.shutdown()
    print("harbor_client: wire checks hold (1.8, 1.10, 2.0, 2.9 chunks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
