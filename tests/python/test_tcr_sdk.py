"""The official, unchanged TencentCloud TCR SDK (tencentcloud-sdk-python-tcr) against the
emulator's control plane, plus cross-checks of the Rust TC3 signer with the SDK's own signing.

Run by tests/cloudapi_sdk.rs, which starts the emulator and sets:
  TCR_EMULATOR_API   host:port of the control plane
  TCR_SECRET_ID / TCR_SECRET_KEY / TCR_UIN / TCR_REGISTRY_ID / TCR_REGION
  TCR_RUST_SIGNED    JSON of a request signed by the Rust signer (cross-check)
"""

import json
import os
import time
import uuid

import pytest
import requests
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tcr.v20190924 import models, tcr_client

ENDPOINT = os.environ["TCR_EMULATOR_API"]
SECRET_ID = os.environ["TCR_SECRET_ID"]
SECRET_KEY = os.environ["TCR_SECRET_KEY"]
UIN = os.environ["TCR_UIN"]
REGISTRY_ID = os.environ["TCR_REGISTRY_ID"]
REGION = os.environ["TCR_REGION"]


def make_client(secret_id=SECRET_ID, secret_key=SECRET_KEY, method="POST", endpoint=ENDPOINT):
    http = HttpProfile(protocol="http", endpoint=endpoint, reqMethod=method, reqTimeout=10)
    profile = ClientProfile(httpProfile=http, language="en-US")
    return tcr_client.TcrClient(credential.Credential(secret_id, secret_key), REGION, profile)


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def error_code(call):
    with pytest.raises(TencentCloudSDKException) as e:
        call()
    assert e.value.get_request_id(), "errors carry a RequestId"
    return e.value.get_code()


def signed_request(client, action, params, timestamp=None, monkeypatch=None):
    """Build (without sending) the request the SDK would send, optionally at another time."""
    req = RequestInternal(client._get_endpoint(), "POST", "/", header={})
    if timestamp is None:
        client._build_req_inter(action, params, req)
    else:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(abstract_client.time, "time", lambda: timestamp)
            client._build_req_inter(action, params, req)
    return req


def send_raw(req, data=None):
    body = req.data if data is None else data
    resp = requests.post("http://%s/" % ENDPOINT, data=body.encode("utf-8"), headers=req.header, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    return resp.json()["Response"]


def create_ns_request(name, public=False):
    req = models.CreateNamespaceRequest()
    req.RegistryId = REGISTRY_ID
    req.NamespaceName = name
    req.IsPublic = public
    return req


def describe_ns(client, name=None, limit=100):
    req = models.DescribeNamespacesRequest()
    req.RegistryId = REGISTRY_ID
    if name is not None:
        req.NamespaceName = name
    req.Limit = limit
    req.Offset = 0
    return client.DescribeNamespaces(req)


def test_describe_instances_finds_the_emulated_instance():
    client = make_client()
    req = models.DescribeInstancesRequest()
    req.AllRegion = True
    f = models.Filter()
    f.Name = "RegistryId"
    f.Values = [REGISTRY_ID]
    req.Filters = [f]
    resp = client.DescribeInstances(req)
    assert resp.TotalCount == 1
    reg = resp.Registries[0]
    assert reg.RegistryId == REGISTRY_ID
    assert reg.RegionName == REGION
    assert reg.Status == "Running"
    assert reg.PublicDomain
    assert resp.RequestId


def test_namespaces_create_describe_delete():
    client = make_client()
    name = unique("sdk")
    assert client.CreateNamespace(create_ns_request(name)).RequestId
    # Duplicate: TCR's conflict code, Harbor's message.
    code = error_code(lambda: client.CreateNamespace(create_ns_request(name)))
    assert code == "FailedOperation.ErrorTcrResourceConflict"

    other = name + "x"
    client.CreateNamespace(create_ns_request(other, public=True))
    # NamespaceName is a substring filter, like the real service.
    resp = describe_ns(client, name)
    names = sorted(n.Name for n in resp.NamespaceList)
    assert names == sorted([name, other])
    assert resp.TotalCount == 2
    mine = [n for n in resp.NamespaceList if n.Name == other][0]
    assert mine.Public is True
    assert {m.Key: m.Value for m in mine.Metadata}["public"] == "true"
    assert mine.NamespaceId > 0 and mine.CreationTime

    for n in (name, other):
        req = models.DeleteNamespaceRequest()
        req.RegistryId = REGISTRY_ID
        req.NamespaceName = n
        client.DeleteNamespace(req)
    assert describe_ns(client, name).TotalCount == 0
    req = models.DeleteNamespaceRequest()
    req.RegistryId = REGISTRY_ID
    req.NamespaceName = name
    assert error_code(lambda: client.DeleteNamespace(req)) == "ResourceNotFound.TcrResourceNotFound"


def test_get_requests_work_too():
    name = unique("get")
    make_client().CreateNamespace(create_ns_request(name))
    resp = describe_ns(make_client(method="GET"), name)
    assert [n.Name for n in resp.NamespaceList] == [name]


def test_invalid_namespace_name_is_refused_with_the_rule():
    client = make_client()
    with pytest.raises(TencentCloudSDKException) as e:
        client.CreateNamespace(create_ns_request("Bad_Name-"))
    assert e.value.get_code().startswith("InvalidParameter")
    assert "2 to 30" in e.value.get_message()


@pytest.mark.parametrize("kind", ["temp", "longterm"])
def test_instance_tokens(kind):
    req = models.CreateInstanceTokenRequest()
    req.RegistryId = REGISTRY_ID
    req.TokenType = kind
    before_ms = int(time.time() * 1000)
    resp = make_client().CreateInstanceToken(req)
    assert resp.Username == UIN
    assert resp.Token.count(".") == 2, "a JWT"
    if kind == "temp":
        assert resp.TokenId == ""
        # ExpTime is in milliseconds, one hour ahead.
        assert abs(resp.ExpTime - (before_ms + 3600 * 1000)) < 60 * 1000
    else:
        assert resp.TokenId
        assert resp.ExpTime > before_ms + 9 * 365 * 24 * 3600 * 1000


def test_unknown_registry_is_not_found():
    req = models.CreateInstanceTokenRequest()
    req.RegistryId = "tcr-doesnotexist"
    assert error_code(lambda: make_client().CreateInstanceToken(req)) == "ResourceNotFound.TcrResourceNotFound"


def test_unknown_secret_id():
    client = make_client(secret_id="AKIDnobodyHasThisKey000000000000")
    assert error_code(lambda: describe_ns(client)) == "AuthFailure.SecretIdNotFound"


def test_wrong_secret_key():
    client = make_client(secret_key="not-the-right-key")
    assert error_code(lambda: describe_ns(client)) == "AuthFailure.SignatureFailure"


def test_stale_timestamp_is_expired():
    client = make_client()
    params = {"RegistryId": REGISTRY_ID}
    req = signed_request(client, "DescribeNamespaces", params, timestamp=int(time.time()) - 600)
    resp = send_raw(req)
    assert resp["Error"]["Code"] == "AuthFailure.SignatureExpire"
    # Four minutes is within the allowed skew.
    req = signed_request(client, "DescribeNamespaces", params, timestamp=int(time.time()) - 240)
    assert "Error" not in send_raw(req)


def test_tampered_body_fails_the_signature():
    client = make_client()
    name = unique("tamper")
    req = signed_request(client, "CreateNamespace", {"RegistryId": REGISTRY_ID, "NamespaceName": name, "IsPublic": False})
    tampered = req.data.replace("false", "true")
    assert tampered != req.data
    assert send_raw(req, tampered)["Error"]["Code"] == "AuthFailure.SignatureFailure"
    # The untouched request goes through.
    assert "Error" not in send_raw(req)


def test_unknown_action_and_version():
    client = make_client()
    req = signed_request(client, "DescribeNothing", {})
    resp = send_raw(req)
    assert resp["Error"]["Code"] == "InvalidAction"
    assert resp["Error"]["Message"] == "The request `Action` is invalid or not found."
    req = signed_request(client, "DescribeNamespaces", {"RegistryId": REGISTRY_ID})
    req.header["X-TC-Version"] = "2017-03-12"
    assert send_raw(req)["Error"]["Code"] == "NoSuchVersion"


def test_missing_parameter_message():
    client = make_client()
    req = signed_request(client, "CreateNamespace", {"RegistryId": REGISTRY_ID, "IsPublic": False})
    err = send_raw(req)["Error"]
    assert err["Code"] == "MissingParameter"
    assert err["Message"] == "The request is missing a required parameter `NamespaceName`."


def test_rust_signer_agrees_with_the_sdk_signer():
    case = json.loads(os.environ["TCR_RUST_SIGNED"])
    client = make_client(secret_id=case["secret_id"], secret_key=case["secret_key"], endpoint=case["host"])
    params = json.loads(case["body"])  # keeps the key order
    req = signed_request(client, case["action"], params, timestamp=case["timestamp"])
    assert req.data == case["body"], "the SDK serialises the parameters as the Rust case assumed"
    assert req.header["Content-Type"] == case["content_type"]
    assert req.header["Authorization"] == case["authorization"]
