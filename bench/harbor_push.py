#!/usr/bin/env python3
"""A Harbor replication push for scripts/bench-wan.sh (issue 17; Harbor-faithful since issue 24).

`--harbor 1.8|1.10|2.0|2.9` (bench/harbor_client.py names the Harbor source lines followed):
one replication job per image, each with its own client, authorizer and token cache, as a
Harbor jobservice worker runs it. Per job:
  GET /v2/ (no credentials; the 401 bearer challenge names realm and service)
  GET <realm>?scope=repository:<repo>:pull&service=..   (Basic user:password)
  HEAD /v2/<repo>/manifests/<tag>                (pull scope; 404 here)
  per blob (config first, then the layers), one after another:
    HEAD /v2/<repo>/blobs/<digest>               (pull scope, cached)   200: skip
    404: POST /v2/<repo>/blobs/uploads/          (token for pull,push)
         PUT <location>?digest=<digest>          (monolithic; 1.8 chunked transfer encoding,
                                                  1.x raw digest, 2.x re-encoded query)
  PUT /v2/<repo>/manifests/<tag>                 (pull,push, cached)
`--harbor 2.9 --chunk-size N` is Harbor 2.9's copy-by-chunk (REPLICATION_CHUNK_SIZE = N): a blob
larger than N is HEADed, then POST, PATCH chunks of N bytes with Content-Range, and the last
chunk as PUT ?digest=; a blob of at most N bytes goes monolithic without a HEAD first (v2.9.5
transfer.go copyBlobByChunk). The native adapter never mounts (CanBeMount is false).

`--harbor one-token` is NOT Harbor: the client BENCHMARKS.md's WAN rows used before issue 24,
one `pull,push` token per job for every request, no ping (kept to explain those rows).

The project: `--images` images; the first layers (`--layer-sizes`, all but the last) are shared
base layers, the last is each image's own; all random bytes, fresh on every run (nothing a
previous run pushed can match). `--parallel` jobs at a time (Harbor's job workers).

Prints one JSON line: seconds, distinct blob bytes, and the client's counters (requests,
token_requests, pings, cache_hits, blobs_found, blobs_uploaded, bytes_uploaded, chunks).
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.parse

import requests

import harbor_client

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def blob(data, media_type):
    return {"mediaType": media_type, "size": len(data),
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "data": data}


def project(images, sizes):
    shared = [blob(os.urandom(s), MT_LAYER) for s in sizes[:-1]]
    out = []
    for i in range(images):
        own = blob(os.urandom(sizes[-1]), MT_LAYER)
        layers = shared + [own]
        cfg = blob(json.dumps({"architecture": "amd64", "os": "linux",
                               "config": {"Env": ["IMG=%d" % i, "RUN=%s" % os.urandom(8).hex()]},
                               "rootfs": {"type": "layers",
                                          "diff_ids": [l["digest"] for l in layers]}}).encode(),
                   MT_CONFIG)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {k: cfg[k] for k in ("mediaType", "size", "digest")},
            "layers": [{k: l[k] for k in ("mediaType", "size", "digest")} for l in layers],
        }).encode()
        out.append({"index": i, "blobs": [cfg] + layers, "manifest": manifest})
    distinct = {b["digest"]: b["size"] for img in out for b in img["blobs"]}
    return out, sum(distinct.values())


def machine_cpu():
    """(busy, total) jiffies of all cores from /proc/stat (iowait counts as idle), or None: how
    busy the machine was while the push ran (near 100 %, a path's extra CPU becomes time)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(v)
    return total - v[3] - (v[4] if len(v) > 4 else 0), total


TRACE = os.environ.get("HARBOR_PUSH_TRACE") == "1"
T_START = time.monotonic()


def trace(t0, method, url, status):
    """With HARBOR_PUSH_TRACE=1: one line per request on stderr (start, duration, what)."""
    if TRACE:
        now = time.monotonic()
        path = urllib.parse.urlsplit(url).path
        print("%8.1f ms %6.1f ms %-4s %d %s" % ((t0 - T_START) * 1000, (now - t0) * 1000,
                                              method, status, path[-60:]), file=sys.stderr)


def parse_challenge(h):
    params = dict(re.findall(r'(\w+)="([^"]*)"', h or ""))
    if "realm" not in params:
        raise RuntimeError("no Bearer realm in challenge %r" % h)
    return params


class OneTokenTask:
    """NOT Harbor (`--harbor one-token`): the pre-issue-24 client, one image into one repository
    over one keep-alive session with a single `pull,push` token for every request."""

    def __init__(self, base, user, password, repo, stats):
        self.base, self.user, self.password, self.repo = base.rstrip("/"), user, password, repo
        self.s = requests.Session()
        self.stats = stats
        self.token = None

    def req(self, method, url, expect, **kw):
        if not url.startswith("http"):
            url = urllib.parse.urljoin(self.base + "/", url)
        headers = kw.pop("headers", {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        t0 = time.monotonic()
        r = self.s.request(method, url, headers=headers, allow_redirects=False, timeout=600, **kw)
        trace(t0, method, url, r.status_code)
        self.stats.add(requests=1)
        if r.status_code not in expect:
            raise RuntimeError("%s %s: %d %s" % (method, url, r.status_code, r.text[:300]))
        return r

    def login(self):
        r = self.req("GET", "/v2/", (200, 401))
        if r.status_code == 200:
            return
        ch = parse_challenge(r.headers.get("WWW-Authenticate"))
        params = {"scope": "repository:%s:pull,push" % self.repo}
        if ch.get("service"):
            params["service"] = ch["service"]
        t0 = time.monotonic()
        t = self.s.get(ch["realm"], params=params, auth=(self.user, self.password), timeout=60)
        trace(t0, "GET", ch["realm"], t.status_code)
        self.stats.add(requests=1)
        if t.status_code != 200:
            raise RuntimeError("token: %d %s" % (t.status_code, t.text[:300]))
        j = t.json()
        self.token = j.get("token") or j.get("access_token")

    def push(self, img, tag):
        self.login()
        self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, tag), (200, 404),
                 headers={"Accept": MT_MANIFEST})
        for b in img["blobs"]:
            r = self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, b["digest"]), (200, 404))
            if r.status_code == 200:
                self.stats.add(blobs_found=1)
                continue
            r = self.req("POST", "/v2/%s/blobs/uploads/" % self.repo, (202,),
                         headers={"Content-Length": "0"})
            loc = r.headers["Location"]
            loc += ("&" if "?" in loc else "?") + urllib.parse.urlencode({"digest": b["digest"]})
            self.req("PUT", loc, (201,), data=b["data"],
                     headers={"Content-Type": "application/octet-stream"})
            self.stats.add(blobs_uploaded=1, bytes_uploaded=b["size"])
        self.req("PUT", "/v2/%s/manifests/%s" % (self.repo, tag), (201,), data=img["manifest"],
                 headers={"Content-Type": MT_MANIFEST})
        self.s.close()


def harbor_job(gen, chunk, registry, user, password, repo, img, tag, stats):
    """One Harbor replication job (bench/harbor_client.py): its own client and token cache."""
    c = harbor_client.Client(gen, registry, user, password, stats, trace if TRACE else None)
    try:
        harbor_client.copy_image(c, repo, tag, img["blobs"], img["manifest"], MT_MANIFEST, chunk)
    finally:
        c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--registry", required=True, help="http://host:port")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--layer-sizes", default="8388608,4194304,1048576",
                   help="bytes; all but the last are shared base layers, the last is per image")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--tag", default="v1")
    p.add_argument("--harbor", default="2.0", choices=harbor_client.GENERATIONS + ("one-token",),
                   help="Harbor generation to imitate; one-token = the old non-Harbor client")
    p.add_argument("--chunk-size", type=int, default=0,
                   help="2.9 only: copy by chunk with REPLICATION_CHUNK_SIZE = this many bytes")
    a = p.parse_args()
    if a.chunk_size and a.harbor != "2.9":
        p.error("--chunk-size is Harbor 2.9's copy-by-chunk: use it with --harbor 2.9")

    imgs, distinct = project(a.images, [int(x) for x in a.layer_sizes.split(",")])
    stats = harbor_client.Counters()

    def one(img):
        repo = "%s/img%d" % (a.namespace, img["index"])
        if a.harbor == "one-token":
            OneTokenTask(a.registry, a.user, a.password, repo, stats).push(img, a.tag)
        else:
            harbor_job(a.harbor, a.chunk_size, a.registry, a.user, a.password, repo, img, a.tag,
                       stats)

    cpu0 = machine_cpu()
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.parallel) as ex:
        for f in [ex.submit(one, img) for img in imgs]:
            f.result()
    secs = time.monotonic() - t0
    cpu1 = machine_cpu()
    busy = None
    if cpu0 and cpu1 and cpu1[1] > cpu0[1]:
        busy = round(100.0 * (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]))
    out = {"harbor": a.harbor, "chunk_size": a.chunk_size, "seconds": round(secs, 3),
           "distinct_bytes": distinct, "machine_busy_pct": busy}
    out.update(stats.c)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
