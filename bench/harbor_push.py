#!/usr/bin/env python3
"""A Harbor 2.0-style replication push (issue 17), for scripts/bench-wan.sh.

What Harbor 2.0's replication does towards a "Docker Registry" target, per image (one task):
  GET /v2/                                   (ping: the 401 challenge names the token realm)
  GET <realm>?service=..&scope=repository:<repo>:pull,push   (Basic user:password)
  HEAD /v2/<repo>/manifests/<tag>            (already there? 404 here)
  per blob (config first, then the layers), one after another:
    HEAD /v2/<repo>/blobs/<digest>           200: skip the blob
    404: POST /v2/<repo>/blobs/uploads/      then monolithic PUT <location>&digest=<digest>
  PUT /v2/<repo>/manifests/<tag>
It never mounts. Each task has its own keep-alive connection (a requests.Session).

The project: `--images` images; the first layers (`--layer-sizes`, all but the last) are shared
base layers, the last is each image's own; all random bytes, fresh on every run (nothing a
previous run pushed can match). `--parallel` tasks at a time (Harbor's job workers).

Prints one JSON line: seconds, distinct blob bytes, blobs found by HEAD, blobs uploaded, bytes
uploaded by the client, requests the client sent.
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


TRACE = os.environ.get("HARBOR_PUSH_TRACE") == "1"
T_START = time.monotonic()


def trace(t0, method, url, status):
    """With HARBOR_PUSH_TRACE=1: one line per request on stderr (start, duration, what)."""
    if TRACE:
        now = time.monotonic()
        path = urllib.parse.urlsplit(url).path
        print("%8.1f ms %6.1f ms %-4s %d %s" % ((t0 - T_START) * 1000, (now - t0) * 1000,
                                              method, status, path[-60:]), file=sys.stderr)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {"requests": 0, "blobs_found": 0, "blobs_uploaded": 0, "bytes_uploaded": 0}

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                self.c[k] += v


def parse_challenge(h):
    params = dict(re.findall(r'(\w+)="([^"]*)"', h or ""))
    if "realm" not in params:
        raise RuntimeError("no Bearer realm in challenge %r" % h)
    return params


class Task:
    """One replication task: one image into one repository over one keep-alive session."""

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
    a = p.parse_args()

    imgs, distinct = project(a.images, [int(x) for x in a.layer_sizes.split(",")])
    stats = Stats()

    def one(img):
        Task(a.registry, a.user, a.password, "%s/img%d" % (a.namespace, img["index"]),
             stats).push(img, a.tag)

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.parallel) as ex:
        for f in [ex.submit(one, img) for img in imgs]:
            f.result()
    secs = time.monotonic() - t0
    out = {"seconds": round(secs, 3), "distinct_bytes": distinct}
    out.update(stats.c)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
