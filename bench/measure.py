#!/usr/bin/env python3
"""Measurement helpers called by scripts/bench.sh. Each measuring subcommand appends one JSON
record per figure to the results file (--results) as
  {"test", "upstream", "path", "run", "value", "unit"}
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import io
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regclient as rc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def record(args, test, value, unit, **extra):
    rec = {"test": test, "upstream": args.upstream, "path": args.path, "run": args.run,
           "value": value, "unit": unit}
    rec.update(extra)
    with open(args.results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print("  %-28s %-12s %-8s run %s: %.3f %s" % (test, args.upstream, args.path, args.run, value, unit),
          flush=True)


# ---------------------------------------------------------------- control plane (setup) --

def sdk_client(api, secret_id, secret_key, region):
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.tcr.v20190924 import tcr_client
    # `api` is host:port (plain HTTP) or https://host:port (trusting $BENCH_CA_FILE).
    https = api.startswith("https://")
    http = HttpProfile(protocol="https" if https else "http", endpoint=api.split("://")[-1],
                       reqMethod="POST", reqTimeout=30,
                       certification=os.environ.get("BENCH_CA_FILE") if https else None)
    return tcr_client.TcrClient(credential.Credential(secret_id, secret_key), region,
                                ClientProfile(httpProfile=http))


def cmd_setup(a):
    """Long-term instance token for direct access + the namespaces the benchmark writes into."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.tcr.v20190924 import models
    c = sdk_client(a.api, a.secret_id, a.secret_key, a.region)
    req = models.CreateInstanceTokenRequest()
    req.RegistryId = a.registry_id
    req.TokenType = "longterm"
    req.Desc = "benchmark"
    resp = c.CreateInstanceToken(req)
    for ns in a.namespaces.split(","):
        r = models.CreateNamespaceRequest()
        r.RegistryId = a.registry_id
        r.NamespaceName = ns
        r.IsPublic = False
        try:
            c.CreateNamespace(r)
        except TencentCloudSDKException as e:
            if "AlreadyExist" not in (e.get_code() or ""):
                raise
    print("%s %s" % (resp.Username, resp.Token))


# ------------------------------------------------------------------------------ blobs --

def cmd_blobs(a):
    scope = ["repository:%s:pull,push" % a.repo]
    bearer = rc.token(a.realm or a.base, a.service, scope, a.user, a.password)
    tags = ["%s-%s-%d" % (a.tag, a.size, i) for i in range(a.count)]
    cache = os.path.join(a.workdir, "digests")
    os.makedirs(cache, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(max(1, min(a.parallel, 8))) as ex:
        digests = list(ex.map(lambda t: rc.body_digest(t, a.size, cache), tags))
    total = a.size * a.count

    def push(pairs):
        conn = rc.Conn(a.base)
        for t, d in pairs:
            rc.push_blob(conn, a.repo, bearer, t, a.size, d)
        conn.close()

    def pull(pairs):
        conn = rc.Conn(a.base)
        for _, d in pairs:
            rc.pull_blob(conn, a.repo, bearer, d, a.size)
        conn.close()

    work = list(zip(tags, digests))
    shards = [work[i::a.parallel] for i in range(a.parallel)]
    fn = push if a.op == "push" else pull
    cpu_pids = parse_cpu(a.cpu)
    cpu0 = {name: proc_cpu(pids) for name, pids in cpu_pids.items()}
    client0 = self_cpu()
    t0 = time.monotonic()
    if a.parallel == 1:
        fn(work)
    else:
        with concurrent.futures.ThreadPoolExecutor(a.parallel) as ex:
            for f in [ex.submit(fn, s) for s in shards]:
                f.result()
    dt = time.monotonic() - t0
    gib = total / float(1 << 30)
    cpu = {name: round((proc_cpu(pids) - cpu0[name]) / gib, 3) for name, pids in cpu_pids.items()}
    if cpu_pids:
        cpu["client"] = round((self_cpu() - client0) / gib, 3)
    if a.test:
        record(a, a.test, total / (1 << 20) / dt, "MiB/s", seconds=dt, cpu_s_per_gib=cpu)


def parse_cpu(specs):
    """`name=pid[+pid…]` → {name: [pid, …]}: processes whose CPU time a figure reports."""
    out = {}
    for spec in specs or []:
        name, _, pids = spec.partition("=")
        out[name] = [int(x) for x in pids.split("+") if x]
    return out


def self_cpu():
    """User + system CPU seconds of this client process (all its threads)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pids):
    """User + system CPU seconds of `pids` and of their direct children (nginx workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    want = set(pids)
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid ... utime(14th field overall) stime(15th)
        if int(entry) in want or int(fields[1]) in want:
            total += int(fields[11]) + int(fields[12])
    return total / float(tick)


# ------------------------------------------------------------------ small image (HEADs) --

def cmd_image(a):
    """Push one small image (config + one layer + manifest); print blob and manifest digests."""
    scope = ["repository:%s:pull,push" % a.repo]
    bearer = rc.token(a.realm or a.base, a.service, scope, a.user, a.password)
    conn = rc.Conn(a.base)
    layer = b"benchmark layer\n" * 4096
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    descs = []
    for data, mt in ((config, "application/vnd.oci.image.config.v1+json"),
                     (layer, "application/vnd.oci.image.layer.v1.tar")):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        r, body = conn.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (a.repo, d),
                               {"Authorization": "Bearer " + bearer,
                                "Content-Type": "application/octet-stream"}, body=data)
        if r.status != 201:
            raise RuntimeError("monolithic POST: %d %s" % (r.status, body[:200]))
        descs.append({"mediaType": mt, "digest": d, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descs[0], "layers": descs[1:]}).encode()
    rc.put_manifest(conn, a.repo, bearer, "v1", manifest, "application/vnd.oci.image.manifest.v1+json")
    print(descs[0]["digest"], descs[1]["digest"], "sha256:" + hashlib.sha256(manifest).hexdigest())


# ---------------------------------------------------------------------------------- wrk --

def cmd_token(a):
    print(rc.token(a.realm or a.base, a.service, a.scope, a.user, a.password))


def cmd_wrk(a):
    env = dict(os.environ, WRK_METHOD=a.method, WRK_AUTH=a.auth)
    cmd = ["wrk", "-t%d" % a.threads, "-c%d" % a.conns, "-d%ds" % a.duration, "--latency",
           "--timeout", "10s", "-s", os.path.join(HERE, "wrk_request.lua"), a.url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("WRKJSON ")]
    if not line:
        raise RuntimeError("wrk printed no summary:\n" + out)
    s = json.loads(line[-1][len("WRKJSON "):])
    if s["non2xx"] or s["errors"] or not s["requests"]:
        raise RuntimeError("wrk %s %s: %d requests, %d non-2xx, %d socket errors\n%s"
                           % (a.method, a.url, s["requests"], s["non2xx"], s["errors"], out))
    if a.kind == "latency":
        record(a, a.test + " p50", s["p50_us"] / 1000.0, "ms")
        record(a, a.test + " p99", s["p99_us"] / 1000.0, "ms")
    else:
        record(a, a.test, s["rps"], "req/s")


# --------------------------------------------------------------------- OCI layout (skopeo) --

def tar_layer(name, content):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        t.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def cmd_layouts(a):
    """One OCI layout holding `count` images (tags img0..), each with 3 distinct tar layers."""
    d = a.dir
    os.makedirs(os.path.join(d, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(d, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')

    def put(data):
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(d, "blobs", "sha256", h), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    sizes = [int(x) for x in a.layer_sizes.split(",")]
    a.shared_content = {}
    refs = []
    for i in range(a.count):
        layers, diff_ids = [], []
        for j, sz in enumerate(sizes):
            # The first `shared` layers are the same in every image (a common base), the rest
            # unique to the image.
            if j < a.shared:
                content = a.shared_content.setdefault(j, os.urandom(sz))
            else:
                content = hashlib.sha256(b"%d-%d" % (i, j)).digest() + os.urandom(max(0, sz - 32))
            tarb = tar_layer("layer%d/data.bin" % j, content)
            desc = put(tarb)
            desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
            layers.append(desc)
            diff_ids.append(desc["digest"])
        cfg = put(json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                              "config": {"Env": ["IMG=%d" % i]},
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
        cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
        m = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": cfg, "layers": layers}).encode())
        m["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
        m["annotations"] = {"org.opencontainers.image.ref.name": "img%d" % i}
        refs.append(m)
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": refs}, f)


def cmd_skopeo(a):
    """Copy every image of the layout to <dest>/<prefix>img<i>:v1, one `skopeo copy` each, for
    every target given as `--target path,dest,prefix,user,password`; the targets take turns image
    by image (direct img0, adapter img0, direct img1, ...), so that a burst of background load
    hits all paths alike, and each path's figure is the sum of its own copies' wall times.

    Every call of this command gets a fresh, empty HOME/XDG tree per target, and skopeo is told to
    keep its blob-info cache there: as root, containers/image otherwise keeps it in
    /var/lib/containers/cache, shared by all runs, and runs 2..N would mount the layers that run 1
    uploaded (cross-repository) instead of uploading them. `_CONTAINERS_ROOTLESS_UID` makes it
    choose $XDG_DATA_HOME/containers/cache; the command checks that the cache really landed there.
    """
    targets = []
    for spec in a.target:
        path, dest, prefix, user, password = spec.split(",", 4)
        home = tempfile.mkdtemp(prefix="skopeo-home-%s-" % path, dir=a.workdir)
        env = dict(os.environ, HOME=home, XDG_DATA_HOME=os.path.join(home, "data"),
                   XDG_CONFIG_HOME=os.path.join(home, "config"),
                   XDG_CACHE_HOME=os.path.join(home, "cache"),
                   XDG_RUNTIME_DIR=os.path.join(home, "run"), _CONTAINERS_ROOTLESS_UID="1000")
        for d in ("data", "config", "cache", "run"):
            os.makedirs(os.path.join(home, d), mode=0o700)
        targets.append({"path": path, "dest": dest, "prefix": prefix, "creds": "%s:%s" % (user, password),
                        "home": home, "env": env, "seconds": 0.0})
    for i in range(a.count):
        for t in targets:
            tls = ["--dest-cert-dir", a.cert_dir] if a.cert_dir else ["--dest-tls-verify=false"]
            prefix = t["prefix"].replace("{i}", str(i))
            cmd = ["skopeo", "copy", "--quiet", *tls, "--dest-creds", t["creds"],
                   "oci:%s:img%d" % (a.dir, i), "docker://%s/%simg%d:v1" % (t["dest"], prefix, i)]
            t0 = time.monotonic()
            p = subprocess.run(cmd, capture_output=True, text=True, env=t["env"])
            t["seconds"] += time.monotonic() - t0
            if p.returncode != 0:
                raise RuntimeError("skopeo copy failed: %s\n%s" % (" ".join(cmd[:3]), p.stderr))
    for t in targets:
        cache = os.path.join(t["home"], "data", "containers", "cache")
        if not os.path.isdir(cache) or not os.listdir(cache):
            raise RuntimeError("skopeo did not keep its blob-info cache in the fresh %s" % cache)
        a.path = t["path"]
        record(a, a.test, t["seconds"], "s")


# ------------------------------------------------------------------------------ RSS --

def cmd_rss(a):
    """Reset VmHWM of `pid`, run the parallel push (like `blobs`), record peak RSS."""
    try:
        with open("/proc/%d/clear_refs" % a.pid, "w") as f:
            f.write("5")
    except OSError as e:
        print("  (cannot reset VmHWM: %s; value includes earlier peaks)" % e)
    base = status_kb(a.pid, "VmRSS")
    peak_sampled = [base]
    stop = [False]

    def sampler():
        while not stop[0]:
            peak_sampled[0] = max(peak_sampled[0], status_kb(a.pid, "VmRSS"))
            time.sleep(0.05)

    import threading
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    test = a.test
    a.test = None
    cmd_blobs(a)
    a.test = test
    stop[0] = True
    th.join()
    hwm = status_kb(a.pid, "VmHWM")
    record(a, test, hwm / 1024.0, "MiB", rss_before_mib=base / 1024.0,
           sampled_peak_mib=peak_sampled[0] / 1024.0)


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--results", default=os.environ.get("BENCH_RESULTS", "/dev/null"))
        sp.add_argument("--upstream", default="")
        sp.add_argument("--path", default="")
        sp.add_argument("--run", default="0")
        sp.add_argument("--test", default="")

    def auth(sp):
        sp.add_argument("--base", required=True)
        sp.add_argument("--realm", default="")
        sp.add_argument("--service", required=True)
        sp.add_argument("--user", required=True)
        sp.add_argument("--password", required=True)

    s = sub.add_parser("setup")
    s.add_argument("--api", required=True)
    s.add_argument("--secret-id", required=True)
    s.add_argument("--secret-key", required=True)
    s.add_argument("--region", required=True)
    s.add_argument("--registry-id", required=True)
    s.add_argument("--namespaces", required=True)
    s.set_defaults(fn=cmd_setup)

    for name, fn in (("blobs", cmd_blobs), ("rss", cmd_rss)):
        s = sub.add_parser(name)
        common(s)
        auth(s)
        s.add_argument("--repo", required=True)
        s.add_argument("--op", choices=["push", "pull"], default="push")
        s.add_argument("--size", type=int, required=True)
        s.add_argument("--count", type=int, default=1)
        s.add_argument("--parallel", type=int, default=1)
        s.add_argument("--tag", required=True)
        s.add_argument("--workdir", required=True)
        s.add_argument("--pid", type=int, default=0)
        s.add_argument("--cpu", action="append", default=[],
                       help="name=pid[+pid]: report these processes' CPU seconds per GiB")
        s.set_defaults(fn=fn)

    s = sub.add_parser("image")
    auth(s)
    s.add_argument("--repo", required=True)
    s.set_defaults(fn=cmd_image)

    s = sub.add_parser("token")
    auth(s)
    s.add_argument("--scope", action="append", default=[])
    s.set_defaults(fn=cmd_token)

    s = sub.add_parser("wrk")
    common(s)
    s.add_argument("--kind", choices=["latency", "throughput"], required=True)
    s.add_argument("--url", required=True)
    s.add_argument("--method", default="GET")
    s.add_argument("--auth", default="")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--conns", type=int, default=1)
    s.add_argument("--duration", type=int, default=5)
    s.set_defaults(fn=cmd_wrk)

    s = sub.add_parser("layouts")
    s.add_argument("--dir", required=True)
    s.add_argument("--count", type=int, default=50)
    s.add_argument("--layer-sizes", default="1048576,262144,32768")
    s.add_argument("--shared", type=int, default=0, help="the first N layers are in every image")
    s.set_defaults(fn=cmd_layouts)

    s = sub.add_parser("skopeo")
    common(s)
    s.add_argument("--dir", required=True)
    s.add_argument("--count", type=int, default=50)
    s.add_argument("--target", action="append", required=True,
                   help="path,dest,prefix,user,password (repeat: the targets take turns); "
                        "{i} in prefix is the image number (a namespace per image)")
    s.add_argument("--workdir", default=None)
    s.add_argument("--cert-dir", default=None, help="skopeo --dest-cert-dir (HTTPS with this CA)")
    s.set_defaults(fn=cmd_skopeo)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
