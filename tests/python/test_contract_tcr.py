"""The TCR contract (docs/tcr-contract.md), item by item, through the official, unchanged
TencentCloud TCR SDK (tencentcloud-sdk-python-tcr) against the emulator, under the quirk setting
the emulator runs with.

Run by tests/tcr_contract.rs with one emulator per `[emulator.quirks]` setting, each seeded:
  namespaces cn-00 … cn-44 (45); cn-00 holds the repositories r00 … r44 (45);
  cn-00/r00 holds the tags t00 … t44 (45).
Environment: as tests/python/test_tcr_sdk.py (without TCR_EMULATOR_API), plus
  TCR_CONTRACT_TARGETS  JSON list of {"api": host:port, "paging": documented | page_from_zero |
                        page_from_one | page_from_one_strict | items,
                        "name_filter": partial | exact}
Every test runs against every target.
"""

import base64
import json
import os
import re
import time

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tcr.v20190924 import models, tcr_client

REGISTRY_ID = os.environ["TCR_REGISTRY_ID"]
REGION = os.environ["TCR_REGION"]
TARGETS = json.loads(os.environ["TCR_CONTRACT_TARGETS"])

N = 45
NAMESPACES = ["cn-%02d" % i for i in range(N)]
REPOS = ["cn-00/r%02d" % i for i in range(N)]
TAGS = ["t%02d" % i for i in range(N)]


class Target:
    """One emulator and its quirks; `client()` is an SDK client of it."""

    def __init__(self, api, paging, name_filter):
        self.api, self.paging, self.name_filter = api, paging, name_filter

    def client(self):
        http = HttpProfile(protocol="http", endpoint=self.api, reqMethod="POST", reqTimeout=10)
        profile = ClientProfile(httpProfile=http, language="en-US")
        cred = credential.Credential(os.environ["TCR_SECRET_ID"], os.environ["TCR_SECRET_KEY"])
        return tcr_client.TcrClient(cred, REGION, profile)


@pytest.fixture(
    params=[Target(**t) for t in TARGETS],
    ids=["%s-%s" % (t["paging"], t["name_filter"]) for t in TARGETS],
)
def t(request):
    return request.param


def error_code(call):
    with pytest.raises(TencentCloudSDKException) as e:
        call()
    return e.value.get_code()


def skip_of(paging, action, offset, limit):
    """Items skipped for `Offset` = offset: the contract's table (§2) under the quirk."""
    if paging == "items":
        return offset
    if paging == "page_from_zero" or (paging == "documented" and action == "DescribeNamespaces"):
        return offset * limit
    return max(offset - 1, 0) * limit


def strict(t):
    """A page number from 1 that refuses `Offset: 0` (§2's last plausible reading)."""
    return t.paging == "page_from_one_strict"


def first_offset(t):
    """The offset of the first page under `t`'s quirk (0 everywhere but where it is refused)."""
    return 1 if strict(t) else 0


def describe_namespaces(c, limit=None, offset=None, name=None):
    req = models.DescribeNamespacesRequest()
    req.RegistryId = REGISTRY_ID
    req.Limit, req.Offset, req.NamespaceName = limit, offset, name
    r = c.DescribeNamespaces(req)
    return [n.Name for n in r.NamespaceList], r.TotalCount


def describe_repositories(c, limit=None, offset=None, name=None, ns="cn-00"):
    req = models.DescribeRepositoriesRequest()
    req.RegistryId = REGISTRY_ID
    req.NamespaceName, req.RepositoryName = ns, name
    req.Limit, req.Offset = limit, offset
    r = c.DescribeRepositories(req)
    return [x.Name for x in r.RepositoryList], r.TotalCount


def describe_images(c, limit=None, offset=None, version=None, exact=None, repo="r00"):
    req = models.DescribeImagesRequest()
    req.RegistryId = REGISTRY_ID
    req.NamespaceName, req.RepositoryName = "cn-00", repo
    req.Limit, req.Offset, req.ImageVersion, req.ExactMatch = limit, offset, version, exact
    r = c.DescribeImages(req)
    return [i.ImageVersion for i in r.ImageInfoList], r.TotalCount


LISTINGS = {
    "DescribeNamespaces": (describe_namespaces, NAMESPACES),
    "DescribeRepositories": (describe_repositories, REPOS),
    "DescribeImages": (describe_images, TAGS),
}


@pytest.mark.parametrize("action", sorted(LISTINGS))
def test_offset_is_read_as_the_contract_says(t, action):
    """§2: every page is the slice the contract's reading of `Offset` names; TotalCount counts
    every match; a page past the end is empty with the same TotalCount."""
    call, every = LISTINGS[action]
    c = t.client()
    # The whole listing in one call (its order is the service's; pages are slices of it).
    full, total = call(c, limit=100, offset=first_offset(t))
    assert total == N and sorted(full) == every
    if strict(t):
        assert error_code(lambda: call(c, limit=20, offset=0)) == "InvalidParameterValue"
    for limit, offset in [(20, 0), (20, 1), (20, 2), (20, 3), (10, 4), (1, 1), (7, 6)]:
        if strict(t) and offset == 0:
            continue
        page, total = call(c, limit=limit, offset=offset)
        skip = skip_of(t.paging, action, offset, limit)
        assert page == full[skip:skip + limit], (limit, offset)
        assert total == N
    page, total = call(c, limit=20, offset=100)
    assert page == [] and total == N


def test_describe_images_reference_example(t):
    """REF (DescribeImages): "limit 20 offset 1 → 1-20; limit 20 offset 2 → 21-40"."""
    if t.paging not in ("documented", "page_from_one", "page_from_one_strict"):
        pytest.skip("the reference's example holds for page numbers from 1")
    c = t.client()
    full, _ = describe_images(c, limit=100, offset=1)
    assert describe_images(c, limit=20, offset=1)[0] == full[0:20]
    assert describe_images(c, limit=20, offset=2)[0] == full[20:40]
    # Without Offset: "默认值为1", the first page.
    assert describe_images(c, limit=20)[0] == full[0:20]


def test_describe_instances_offset_counts_items(t):
    """PY: DescribeInstances `Offset` "偏移量,默认0" (items), whatever the paging quirk."""
    c = t.client()
    req = models.DescribeInstancesRequest()
    req.AllRegion = True
    req.Offset = 0
    r = c.DescribeInstances(req)
    assert r.TotalCount == 1 and len(r.Registries) == 1
    req.Offset = 1
    r = c.DescribeInstances(req)
    assert r.TotalCount == 1 and r.Registries == []


def test_limit_bounds_and_negative_offset_are_refused(t):
    """PY: DescribeRepositories Limit "最大值为100", DescribeInstances "最大为100"."""
    c = t.client()
    assert error_code(lambda: describe_repositories(c, limit=101)) == "InvalidParameterValue"
    assert error_code(lambda: describe_images(c, limit=0)) == "InvalidParameterValue"
    assert error_code(lambda: describe_namespaces(c, limit=20, offset=-1)) == "InvalidParameterValue"
    req = models.DescribeInstancesRequest()
    req.Limit = 101
    assert error_code(lambda: c.DescribeInstances(req)) == "InvalidParameterValue"
    # Defaults: 20 (DescribeImages "默认20"; the emulator's default elsewhere too).
    assert len(describe_images(c)[0]) == 20
    assert len(describe_repositories(c)[0]) == 20


def test_name_filters_are_partial_or_exact_as_configured(t):
    """§3: NamespaceName, RepositoryName and ImageVersion match a part (partial) or the whole
    name (exact); ExactMatch asks for the whole tag either way."""
    c = t.client()
    partial = t.name_filter == "partial"
    names, total = describe_namespaces(c, limit=100, name="cn-0")
    assert sorted(names) == (NAMESPACES[:10] if partial else []) and total == len(names)
    names, _ = describe_namespaces(c, limit=100, name="cn-01")
    assert names == ["cn-01"]
    first = first_offset(t)
    repos, _ = describe_repositories(c, limit=100, offset=first, name="r0")
    assert sorted(repos) == (REPOS[:10] if partial else [])
    repos, total = describe_repositories(c, limit=100, offset=first, name="r01")
    assert repos == ["cn-00/r01"] and total == 1
    tags, _ = describe_images(c, limit=100, offset=first, version="t0")
    assert sorted(tags) == (TAGS[:10] if partial else [])
    tags, _ = describe_images(c, limit=100, offset=first, version="t0", exact=True)
    assert tags == []
    tags, _ = describe_images(c, limit=100, offset=first, version="t01", exact=True)
    assert tags == ["t01"]


def test_repository_answers_are_namespace_prefixed_with_go_times(t):
    """EX: `Name` "multi-arch/busybox", `CreationTime` "2024-12-10 14:30:36.806284 +0000 UTC"."""
    c = t.client()
    req = models.DescribeRepositoriesRequest()
    req.RegistryId, req.NamespaceName, req.RepositoryName = REGISTRY_ID, "cn-00", "r07"
    r = c.DescribeRepositories(req)
    repo = [x for x in r.RepositoryList if x.Name == "cn-00/r07"][0]
    assert repo.Namespace == "cn-00"
    go_time = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC$"
    assert re.match(go_time, repo.CreationTime), repo.CreationTime
    assert re.match(go_time, repo.UpdateTime), repo.UpdateTime


def test_absent_things_are_resource_not_found(t):
    c = t.client()
    code = error_code(lambda: describe_repositories(c, ns="no-such-ns"))
    assert code.startswith("ResourceNotFound")
    code = error_code(lambda: describe_images(c, repo="no-such-repo"))
    assert code == "ResourceNotFound.TcrResourceNotFound"
    req = models.DescribeNamespacesRequest()
    req.RegistryId = "tcr-nosuch"
    assert error_code(lambda: c.DescribeNamespaces(req)).startswith("ResourceNotFound")


def test_a_namespace_holding_repositories_is_not_deleted(t):
    """GO lists FailedOperation.PreconditionFailed for DeleteNamespace."""
    c = t.client()
    req = models.DeleteNamespaceRequest()
    req.RegistryId, req.NamespaceName = REGISTRY_ID, "cn-00"
    assert error_code(lambda: c.DeleteNamespace(req)) == "FailedOperation.PreconditionFailed"


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_instance_token_lifetimes(t):
    """EX: temp tokens live one hour (exp − iat = 3600), `ExpTime` in milliseconds, `TokenId`
    empty; long-term ones ten years (315 360 000 s) with a `TokenId`."""
    c = t.client()
    req = models.CreateInstanceTokenRequest()
    req.RegistryId = REGISTRY_ID
    before = time.time()
    r = c.CreateInstanceToken(req)
    claims = jwt_claims(r.Token)
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(r.ExpTime / 1000 - (before + 3600)) < 60, r.ExpTime
    assert r.TokenId == "" and r.Username == os.environ["TCR_UIN"]
    req.TokenType = "longterm"
    r = c.CreateInstanceToken(req)
    claims = jwt_claims(r.Token)
    assert claims["exp"] - claims["iat"] == 315360000
    assert r.TokenId


# Harbor's TCR provider, goharbor/harbor v2.9.5 src/pkg/reg/adapter/tencentcr/sdk.go, as it pages:
# Limit = a.pageSize = 20 (adapter.go line 171).

MAX_CALLS = 60


class NeverEnds(Exception):
    pass


def harbor_list_namespaces(c):
    """sdk.go lines 98-131 (listNamespaces): `var page int64` (0), Offset = page, append every
    name, stop when len(namespaces) >= TotalCount, else page++."""
    namespaces, page = [], 0
    for _ in range(MAX_CALLS):
        names, total = describe_namespaces(c, limit=20, offset=page)
        namespaces += names
        if len(namespaces) >= total:
            return namespaces
        page += 1
    raise NeverEnds("DescribeNamespaces")


def harbor_list_repos(c, namespace):
    """sdk.go lines 164-204 (listReposByNamespace): `var page int64 = 1`, stop when
    len(repos) == TotalCount, else page++."""
    repos, page = [], 1
    for _ in range(MAX_CALLS):
        names, total = describe_repositories(c, limit=20, offset=page, ns=namespace)
        repos += names
        if len(repos) == total:
            return repos
        page += 1
    raise NeverEnds("DescribeRepositories")


def harbor_get_images(c, repo):
    """sdk.go lines 206-251 (getImages): `var page int64 = 1`, stop when
    len(imageNames) == TotalCount, else page++."""
    image_names, page = [], 1
    for _ in range(MAX_CALLS):
        names, total = describe_images(c, limit=20, offset=page, repo=repo)
        image_names += names
        if len(image_names) == total:
            return image_names
        page += 1
    raise NeverEnds("DescribeImages")


def test_harbors_tcr_provider_pages_to_every_item(t):
    """Paged exactly as Harbor's provider pages, the emulator's default (the documented contract)
    answers every item once and the loops end; under the other readings of `Offset` Harbor's
    provider loses, repeats or never ends (which is why they are quirks, not the default)."""
    c = t.client()
    try:
        got = (
            harbor_list_namespaces(c),
            harbor_list_repos(c, "cn-00"),
            harbor_get_images(c, "r00"),
        )
    except (NeverEnds, TencentCloudSDKException) as e:
        got = e  # never ends, or refuses the provider's page 0 of namespaces
    complete = (
        not isinstance(got, Exception)
        and sorted(got[0]) == NAMESPACES
        and sorted(got[1]) == REPOS
        and sorted(got[2]) == TAGS
    )
    if t.paging == "documented":
        assert complete, got
    else:
        assert not complete, "Harbor's provider would work under %s too" % t.paging
