"""What Harbor's registry client sends to a "Docker Registry" endpoint, per generation (issue 24).

Each Harbor replication job builds its own adapter, hence its own authorizer with an empty token
cache; `Client` is that: one requests.Session (keep-alive), one authorizer, one job.

Generations (goharbor/harbor tags, read with `git show <tag>:<path>`):

  "1.8"   v1.8.0  src/common/utils/registry/auth/tokenauthorizer.go (same rules as 1.10), but
                  repository.go monolithicBlobUpload sets no ContentLength: the blob PUT goes out
                  with Transfer-Encoding: chunked; models/token.go reads `token` only.
  "1.10"  v1.10.6 src/common/utils/registry/auth/{tokenauthorizer.go,path.go,util.go},
                  src/common/utils/registry/repository.go.
  "2.0"   v2.0.6  src/pkg/registry/auth/authorizer.go (first request: unauthenticated GET /v2/,
                  bearer challenge -> bearer authorizer), auth/bearer/{authorizer.go,scope.go,
                  cache.go}, src/pkg/registry/client.go.
  "2.9"   v2.9.5  the same authorizer (cache.go also expires a token without issued_at),
                  src/pkg/registry/client.go PushBlobChunk for copy-by-chunk.

Scope per request (1.10 tokenauthorizer.go parseScopes / 2.x bearer/scope.go parseScopes):
GET/HEAD -> repository:<name>:pull; POST/PUT/PATCH -> repository:<name>:pull,push; DELETE ->
repository:<name>:*; /v2/_catalog -> registry:catalog:*; /v2/ -> none. A `from=` query adds
repository:<from>:pull first (1.10: on any path; 2.x: on blob-upload paths only).

Token cache keyed by the scope string, valid until issued_at + expires_in - 10 s
(1.10 tokenauthorizer.go getCachedToken, `latency = 10`; 2.x bearer/cache.go expired()):
1.10 caches only requests with 0 or 1 scope (key "" or the scope); 2.x caches every scope set,
keyed by the scope strings joined with "#", up to 100 entries.
"""

import datetime
import hashlib
import re
import threading
import time
import urllib.parse

import requests

MT_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MT_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"

GENERATIONS = ("1.8", "1.10", "2.0", "2.9")

# docker/distribution reference.NameRegexp / TagRegexp / DigestRegexp, as path.go and scope.go
# compose them (unanchored FindStringSubmatch). Two rewrites keep Python's backtracking engine
# linear (Go's RE2 is): the separator `[-]*` is written `-+` (an empty separator adds nothing to
# the language), and the optional domain component is left out (no path here carries one).
_COMP = r"(?:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)"
NAME = _COMP + r"(?:/" + _COMP + r")*"
TAG = r"[\w][\w.-]{0,127}"
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

# v1.10.6 src/common/utils/registry/auth/path.go
_V1_CATALOG = re.compile(r"/v2/_catalog")
_V1_BASE = re.compile(r"/v2")
_V1_REPO_RES = [
    re.compile(r"/v2/(" + NAME + r")/tags/list"),
    re.compile(r"/v2/(" + NAME + r")/manifests/(" + TAG + "|" + DIGEST + ")"),
    re.compile(r"/v2/(" + NAME + r")/blobs/" + DIGEST),
    re.compile(r"/v2/(" + NAME + r")/blobs/uploads/[a-zA-Z0-9-_.=]+"),
    re.compile(r"/v2/(" + NAME + r")/blobs/uploads"),
]
# v2.0.6 src/pkg/registry/auth/bearer/scope.go (order of the checks in parseScopes)
_V2_CATALOG = re.compile(r"/v2/_catalog$")
_V2_MANIFEST = re.compile(r"/v2/(" + NAME + r")/manifests/(" + TAG + "|" + DIGEST + ")")
_V2_BLOB = re.compile(r"/v2/(" + NAME + r")/blobs/" + DIGEST)
_V2_UPLOAD = re.compile(r"/v2/(" + NAME + r")/blobs/uploads")
_V2_TAG = re.compile(r"/v2/(" + NAME + r")/tags/list")


def _actions(method):
    if method in ("GET", "HEAD"):
        return "pull"
    if method in ("POST", "PUT", "PATCH"):
        return "pull,push"
    if method == "DELETE":
        return "*"
    return None


def scopes_v1(method, url):
    """v1.10.6 tokenauthorizer.go parseScopes: the scope strings of one request."""
    u = urllib.parse.urlsplit(url)
    scopes = []
    frm = urllib.parse.parse_qs(u.query).get("from", [""])[0]
    if frm:
        scopes.append("repository:%s:pull" % frm)
    path = u.path.rstrip("/")
    repo = ""
    for rx in _V1_REPO_RES:  # parseRepository: first regexp that matches
        m = rx.search(path)
        if m:
            repo = m.group(1)
            break
    if repo:
        a = _actions(method)
        if a:
            scopes.append("repository:%s:%s" % (repo, a))
    elif _V1_CATALOG.search(path):
        scopes.append("registry:catalog:*")
    elif _V1_BASE.search(path):
        pass
    else:
        raise RuntimeError("can not parse scope from the request: %s %s" % (method, u.path))
    return scopes


def scopes_v2(method, url):
    """v2.0.6 / v2.9.5 bearer/scope.go parseScopes: the scope strings of one request."""
    u = urllib.parse.urlsplit(url)
    path = u.path.rstrip("/")
    scopes = []
    repo = ""
    m = _V2_MANIFEST.search(path) or _V2_BLOB.search(path)
    if m:
        repo = m.group(1)
    else:
        m = _V2_UPLOAD.search(path)
        if m:
            repo = m.group(1)
            frm = urllib.parse.parse_qs(u.query).get("from", [""])[0]
            if frm:  # blob mount
                scopes.append("repository:%s:pull" % frm)
        else:
            m = _V2_TAG.search(path)
            if m:
                repo = m.group(1)
    if repo:
        a = _actions(method)
        scopes.append("repository:%s:%s" % (repo, a or ""))
        return scopes
    if _V2_CATALOG.search(path):
        return ["registry:catalog:*"]
    return []


def parse_rfc3339(s):
    """Go's time.Parse(time.RFC3339, s); None when it does not parse."""
    if not s:
        return None
    try:
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


LATENCY = 10  # seconds: tokenauthorizer.go `latency`, bearer/cache.go `latency: 10`


def expired(tok, now=None):
    """issued_at + expires_in - 10 s is before now (an unparseable issued_at counts as expired)."""
    issued = parse_rfc3339(tok.get("issued_at"))
    if issued is None:
        return True
    if issued.tzinfo is None:
        issued = issued.replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return issued + datetime.timedelta(seconds=int(tok.get("expires_in") or 0) - LATENCY) < now


def parse_challenges(resp):
    """docker/distribution challenge.ResponseChallenges: only a 401 carries challenges."""
    if resp.status_code != 401:
        return {}
    out = {}
    for h in resp.raw.headers.getlist("WWW-Authenticate"):
        m = re.match(r"\s*(\w+)\s*(.*)", h)
        if m:
            out[m.group(1).lower()] = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
    return out


class Counters:
    """Thread-safe counters shared by every job of a run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = {"requests": 0, "token_requests": 0, "pings": 0, "cache_hits": 0,
                  "blobs_found": 0, "blobs_uploaded": 0, "bytes_uploaded": 0, "chunks": 0}
        self.scopes = []  # (method, path, scope key) of every registry request, for tests

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                self.c[k] += v


class Authorizer:
    """One job's authorizer: ping once, then a token per request scope, cached by scope string."""

    def __init__(self, generation, session, user, password, counters, trace=None):
        assert generation in GENERATIONS
        self.gen, self.s, self.user, self.password = generation, session, user, password
        self.counters, self.trace = counters, trace
        self.realm = self.service = None
        self.initialized = False
        self.cache = {}
        self.lock = threading.Lock()

    def v1(self):
        return self.gen in ("1.8", "1.10")

    def ping(self, base):
        """GET scheme://host/v2/ with no credentials (1.10 tokenauthorizer.go ping, 2.x
        auth/authorizer.go initialize): realm and service of the bearer challenge."""
        t0 = time.monotonic()
        r = self.s.get(base + "/v2/", timeout=60)
        if self.trace:
            self.trace(t0, "GET", base + "/v2/", r.status_code)
        self.counters.add(pings=1, requests=1)
        ch = parse_challenges(r).get("bearer")
        if ch is None:
            # 1.10: "Schemas ... are unsupported", requests go out without auth; 2.x: a basic
            # challenge means Basic auth. Neither happens against the adapter or the emulator.
            raise RuntimeError("no bearer challenge from %s/v2/ (%d)" % (base, r.status_code))
        self.realm, self.service = ch.get("realm"), ch.get("service", "")

    def fetch(self, base, scopes):
        """GET realm?scope=..&service=.. with Basic credentials (1.10 util.go getToken, 2.x
        bearer/authorizer.go fetchToken; Go's url.Values.Encode sorts the keys)."""
        q = [("scope", s) for s in scopes] + [("service", self.service or "")]
        q.sort(key=lambda kv: kv[0])
        url = self.realm + ("&" if "?" in self.realm else "?") + urllib.parse.urlencode(q)
        auth = (self.user, self.password) if (self.v1() or self.user) else None
        t0 = time.monotonic()
        r = self.s.get(url, auth=auth, timeout=60)
        if self.trace:
            self.trace(t0, "GET", self.realm, r.status_code)
        self.counters.add(token_requests=1, requests=1)
        if r.status_code != 200:
            raise RuntimeError("token for %s: %d %s" % (scopes, r.status_code, r.text[:300]))
        j = r.json()
        tok = j.get("token") or ("" if self.gen == "1.8" else j.get("access_token")) or ""
        if not tok:
            raise RuntimeError("empty token content")
        return {"token": tok, "expires_in": j.get("expires_in") or 0,
                "issued_at": j.get("issued_at") or ""}

    def authorize(self, base, method, url):
        """The Authorization header value for one request (None: no scope and no token)."""
        if self.v1():
            scopes = scopes_v1(method, url)
            cacheable = len(scopes) <= 1  # "only cache the token for empty scope or single scope"
            key = scopes[0] if scopes else ""
        else:
            with self.lock:  # 2.x auth/authorizer.go Modify: initialize on the first request
                if not self.initialized:
                    self.ping(base)
                    self.initialized = True
            scopes = scopes_v2(method, url)
            cacheable = True
            key = "#".join(scopes)  # bearer/cache.go key()
        with self.lock:
            self.counters.scopes.append((method, urllib.parse.urlsplit(url).path, key))
            tok = self.cache.get(key) if cacheable else None
            if tok is not None and expired(tok):
                del self.cache[key]
                tok = None
            if tok is not None:
                self.counters.add(cache_hits=1)
                return "Bearer " + tok["token"]
            if self.v1() and (not self.realm or not self.service):
                self.ping(base)  # standardTokenGenerator.generate: ping when realm or service is empty
            tok = self.fetch(base, scopes)
            if cacheable:
                if not self.v1() and len(self.cache) >= 100:  # bearer/cache.go set(): capacity
                    dead = [k for k, v in self.cache.items() if expired(v)]
                    if not dead:
                        dead = [min(self.cache, key=lambda k: parse_rfc3339(
                            self.cache[k]["issued_at"]) or datetime.datetime.min)]
                    for k in dead:
                        del self.cache[k]
                self.cache[key] = tok
            return "Bearer " + tok["token"]


class Client:
    """One job's registry client: Harbor's `Repository` (1.x) / `registry.Client` (2.x)."""

    def __init__(self, generation, base, user, password, counters, trace=None):
        self.gen, self.base = generation, base.rstrip("/")
        self.s = requests.Session()
        self.counters, self.trace = counters, trace
        self.auth = Authorizer(generation, self.s, user, password, counters, trace)
        # v1.x: adp.UserAgentReplication; v2.x: client.go UserAgent
        self.ua = "harbor-replication-service" if self.auth.v1() else "harbor-registry-client"

    def v1(self):
        return self.auth.v1()

    def do(self, method, url, ok, headers=None, data=None):
        """One request through the authorizer; `ok` the statuses Harbor accepts (1.x lists
        exact codes per call, 2.x client.go do() takes any 2xx; 404 is returned for HEADs)."""
        if not url.startswith("http"):
            url = self.base + url
        h = {"User-Agent": self.ua}
        h.update(headers or {})
        a = self.auth.authorize(self.base, method, url)
        if a:
            h["Authorization"] = a
        t0 = time.monotonic()
        r = self.s.request(method, url, headers=h, data=data, allow_redirects=False, timeout=1800)
        if self.trace:
            self.trace(t0, method, url, r.status_code)
        self.counters.add(requests=1)
        good = (200 <= r.status_code < 300) if (ok == "2xx") else (r.status_code in ok)
        if not good:
            raise RuntimeError("%s %s: %d %s" % (method, url, r.status_code, r.text[:300]))
        return r

    def manifest_exist(self, repo, ref):
        """HEAD manifest: (exists, digest). Accept: 1.x schema1+schema2 (repository.go
        ManifestExist), 2.x the six types of client.go `accepts`. Go adds one Accept line per
        type; requests folds them into one comma-separated line (same meaning, RFC 9110)."""
        acc = [MT_SCHEMA1, MT_MANIFEST] if self.v1() else \
            [MT_OCI_INDEX, MT_LIST, MT_OCI_MANIFEST, MT_MANIFEST, MT_SCHEMA1_SIGNED, MT_SCHEMA1]
        r = self.do("HEAD", "/v2/%s/manifests/%s" % (repo, ref),
                    (200, 404) if self.v1() else tuple(range(200, 300)) + (404,),
                    headers={"Accept": ", ".join(acc)})
        if r.status_code == 404:
            return False, None
        return True, r.headers.get("Docker-Content-Digest")

    def blob_exist(self, repo, digest):
        r = self.do("HEAD", "/v2/%s/blobs/%s" % (repo, digest),
                    (200, 404) if self.v1() else tuple(range(200, 300)) + (404,))
        return r.status_code != 404

    def initiate_upload(self, repo):
        """POST …/blobs/uploads/ with an empty body (Go sends Content-Length: 0); the Location."""
        r = self.do("POST", "/v2/%s/blobs/uploads/" % repo, (202,) if self.v1() else "2xx",
                    headers={"Content-Length": "0"})
        return r.headers["Location"]

    def upload_url(self, location, digest=None):
        """1.x buildMonolithicBlobUploadURL: endpoint + location, then "&digest=" or "?digest="
        unencoded. 2.x buildMonolithicBlobUploadURL / buildChunkBlobUploadURL: parse Location,
        q.Set("digest") (last chunk only), RawQuery = q.Encode() (sorted, percent-encoded)."""
        if self.v1():
            u = location if urllib.parse.urlsplit(location).scheme else self.base + location
            return u + ("&" if "?" in u else "?") + "digest=" + digest
        p = urllib.parse.urlsplit(location)
        q = urllib.parse.parse_qs(p.query, keep_blank_values=True)
        if digest:
            q["digest"] = [digest]
        query = urllib.parse.urlencode(sorted((k, v) for k, vs in q.items() for v in vs))
        rel = urllib.parse.urlunsplit(("", "", p.path, query, p.fragment))
        if p.scheme:
            return urllib.parse.urlunsplit((p.scheme, p.netloc, p.path, query, p.fragment))
        return self.base + rel

    def push_blob(self, repo, digest, data):
        """PushBlob: POST, then one monolithic PUT <location>?digest=. 1.8.0 sets no length
        (chunked transfer encoding); 1.8.3+ and 2.x set ContentLength = size."""
        loc = self.initiate_upload(repo)
        url = self.upload_url(loc, digest)
        if self.gen == "1.8":
            body = (data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20))
            self.do("PUT", url, (201,), data=body)
        else:
            self.do("PUT", url, (201,) if self.v1() else "2xx", data=data,
                    headers={"Content-Length": str(len(data))})
        self.counters.add(blobs_uploaded=1, bytes_uploaded=len(data))

    def push_blob_chunks(self, repo, digest, data, chunk):
        """v2.9.5 transfer.go copyBlobByChunk + client.go PushBlobChunk: POST at start 0, then
        PATCH <location> per chunk with Content-Range "start-end" and Content-Length; the last
        chunk is a PUT with ?digest= ("use PUT instead of PATCH for last chunk"); each answer's
        Location is the next chunk's."""
        size = len(data)
        loc = None
        start, end = -1, -1
        while True:
            start = end + 1
            end = min(start + chunk - 1, size - 1)
            if start == 0:
                loc = self.initiate_upload(repo)
            last = end == size - 1
            url = self.upload_url(loc, digest if last else None)
            r = self.do("PUT" if last else "PATCH", url, "2xx", data=data[start:end + 1],
                        headers={"Content-Length": str(end - start + 1),
                                 "Content-Range": "%d-%d" % (start, end)})
            self.counters.add(chunks=1)
            loc = r.headers.get("Location")
            if last:
                break
        self.counters.add(blobs_uploaded=1, bytes_uploaded=size)

    def mount_blob(self, src_repo, digest, dst_repo):
        """2.x client.go MountBlob: POST …/blobs/uploads/?mount=<d>&from=<src>, Content-Length 0.
        Replication never calls it towards a "Docker Registry" (native adapter CanBeMount
        returns false in v2.9.5 src/pkg/reg/adapter/native/adapter.go)."""
        self.do("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s" % (dst_repo, digest, src_repo),
                "2xx", headers={"Content-Length": "0"})

    def push_manifest(self, repo, ref, media_type, payload):
        """PUT manifest with the manifest's own Content-Type. 1.10 takes 200 or 201, 1.8 201."""
        ok = (201,) if self.gen == "1.8" else (200, 201) if self.v1() else "2xx"
        self.do("PUT", "/v2/%s/manifests/%s" % (repo, ref), ok, data=payload,
                headers={"Content-Type": media_type})

    def close(self):
        self.s.close()


def copy_image(client, repo, tag, blobs, manifest, media_type, chunk_size=0):
    """One replication job for one image, in Harbor's order (1.10 / 2.0 transfer.go copyImage,
    2.9 copyArtifact): HEAD the manifest on the destination; per reference (config first, then
    the layers) copyBlob; then PUT the manifest. Blob bodies come from `blobs` (the source side
    is not modelled: it is not what crosses the WAN)."""
    exists, digest = client.manifest_exist(repo, tag)
    if exists and digest == "sha256:" + hashlib.sha256(manifest).hexdigest():
        return  # "the same image already exists ... skip"; another digest is overridden
    for b in blobs:
        if chunk_size and client.gen == "2.9":
            # copyBlobByChunk: "fallback to copy by monolithic if the blob size is equal or
            # less than chunk size" -- copyBlobByMonolithic, which asks no HEAD first.
            if len(b["data"]) <= chunk_size:
                client.push_blob(repo, b["digest"], b["data"])
                continue
            if client.blob_exist(repo, b["digest"]):  # tryMountBlob
                client.counters.add(blobs_found=1)
                continue
            client.push_blob_chunks(repo, b["digest"], b["data"], chunk_size)
            continue
        # 1.10 / 2.0 copyBlob; 2.9 copyBlob = tryMountBlob (HEAD, CanBeMount false) + monolithic
        if client.blob_exist(repo, b["digest"]):
            client.counters.add(blobs_found=1)
            continue
        client.push_blob(repo, b["digest"], b["data"])
    client.push_manifest(repo, tag, media_type, manifest)
