"""Minimal streaming registry client for the benchmarks (stdlib http.client, keep-alive).

Bodies are generated on the fly (a unique 64-byte prefix followed by a repeated 1 MiB random
block), so no test data sits on disk and the client never holds more than 1 MiB in memory.
"""

import base64
import hashlib
import http.client
import json
import os
import random
import ssl
import urllib.parse

BLOCK = 1 << 20
_BLOCK_DATA = random.Random(20240601).randbytes(BLOCK)


def body_chunks(tag, size):
    """The body of blob `tag` of `size` bytes, as memoryviews of at most 1 MiB."""
    prefix = hashlib.sha256(tag.encode()).hexdigest().encode()[:64]
    first = (prefix + _BLOCK_DATA)[:min(size, BLOCK)]
    yield first
    sent = len(first)
    block = memoryview(_BLOCK_DATA)
    while sent < size:
        n = min(BLOCK, size - sent)
        yield block[:n]
        sent += n


def body_digest(tag, size, cache_dir=None):
    key = "%s-%d" % (hashlib.sha1(tag.encode()).hexdigest(), size)
    path = os.path.join(cache_dir, key) if cache_dir else None
    if path and os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    h = hashlib.sha256()
    for c in body_chunks(tag, size):
        h.update(c)
    d = "sha256:" + h.hexdigest()
    if path:
        with open(path, "w") as f:
            f.write(d)
    return d


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def tls_context():
    """Trust the CA in $BENCH_CA_FILE (the emulator's self-signed CA) besides the system roots."""
    ctx = ssl.create_default_context()
    ca = os.environ.get("BENCH_CA_FILE")
    if ca:
        ctx.load_verify_locations(ca)
    return ctx


class Conn:
    """One keep-alive HTTP/1.1 connection to `base` (http(s)://host:port)."""

    def __init__(self, base, timeout=1800):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.https = u.scheme == "https"
        self.timeout = timeout
        self.c = None

    def _conn(self):
        if self.c is None:
            if self.https:
                self.c = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                     blocksize=BLOCK, context=tls_context())
            else:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                    blocksize=BLOCK)
        return self.c

    def request(self, method, path, headers=None, body=None, read=True):
        c = self._conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.c = None
            if body is not None and not isinstance(body, (bytes, str)):
                raise
            c = self._conn()
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
        if read:
            data = r.read()
            return r, data
        return r, None

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def path_of(location):
    """Location → path+query (the client stays on the host it talks to, like a proxy user)."""
    u = urllib.parse.urlsplit(location)
    return u.path + ("?" + u.query if u.query else "")


def token(base, service, scope, user, password):
    c = Conn(base)
    q = urllib.parse.urlencode([("service", service)] + [("scope", s) for s in scope])
    r, data = c.request("GET", "/service/token?" + q,
                        {"Authorization": basic(user, password)})
    c.close()
    if r.status != 200:
        raise RuntimeError("token from %s: %d %s" % (base, r.status, data[:300]))
    return json.loads(data)["token"]


def push_blob(conn, repo, bearer, tag, size, digest):
    auth = {"Authorization": "Bearer " + bearer}
    r, data = conn.request("POST", "/v2/%s/blobs/uploads/" % repo, dict(auth, **{"Content-Length": "0"}))
    if r.status != 202:
        raise RuntimeError("POST upload %s: %d %s" % (repo, r.status, data[:300]))
    loc = path_of(r.getheader("Location"))
    sep = "&" if "?" in loc else "?"
    h = dict(auth, **{"Content-Length": str(size), "Content-Type": "application/octet-stream"})
    r, data = conn.request("PUT", loc + sep + "digest=" + digest, h, body=body_chunks(tag, size))
    if r.status != 201:
        raise RuntimeError("PUT upload %s: %d %s" % (repo, r.status, data[:300]))


def pull_blob(conn, repo, bearer, digest, expect=None):
    r, _ = conn.request("GET", "/v2/%s/blobs/%s" % (repo, digest),
                        {"Authorization": "Bearer " + bearer}, read=False)
    if r.status != 200:
        raise RuntimeError("GET blob %s: %d %s" % (repo, r.status, r.read()[:300]))
    buf = bytearray(BLOCK)
    mv = memoryview(buf)
    n = 0
    while True:
        k = r.readinto(mv)
        if not k:
            break
        n += k
    if expect is not None and n != expect:
        raise RuntimeError("GET blob %s: %d bytes, expected %d" % (digest, n, expect))
    return n


def put_manifest(conn, repo, bearer, ref, manifest_bytes, media_type):
    r, data = conn.request("PUT", "/v2/%s/manifests/%s" % (repo, ref),
                           {"Authorization": "Bearer " + bearer, "Content-Type": media_type},
                           body=manifest_bytes)
    if r.status != 201:
        raise RuntimeError("PUT manifest %s: %d %s" % (repo, r.status, data[:300]))
