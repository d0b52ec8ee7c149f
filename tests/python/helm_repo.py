"""A real Helm client (helm-python-sdk wraps Helm's own Go code) against a chart repository:
the equivalent of `helm repo add <alias> <url> --username U --password P` (fetch and load the
repository index) followed by `helm pull <alias>/<chart> --version V`.

usage: helm_repo.py <repo_url> <user> <password> <chart> <version> <destination_dir>
Prints one JSON object: the charts the index lists and the pulled archive's path and digest.
An empty user means anonymous.
"""
import json
import os
import sys

from helm_python import chart, registry


def main() -> None:
    repo_url, user, password, name, version, dest = sys.argv[1:7]
    auth = {"username": user, "password": password} if user else {}
    index = registry.repo_index(repo_url, **auth)
    entries = index.get("entries") or index.get("Entries") or {}
    pulled = registry.pull(name, repo_url=repo_url, version=version, destination=dest, **auth)
    files = [f for f in os.listdir(dest) if f.endswith(".tgz")]
    path = os.path.join(dest, files[0]) if files else ""
    print(json.dumps({
        "entries": {k: [v.get("version") for v in vs] for k, vs in entries.items()},
        "pulled": pulled,
        "file": path,
        "digest": chart.digest(path) if path else "",
    }, default=str))


if __name__ == "__main__":
    main()
