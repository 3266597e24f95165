"""Bucket versioning as AWS documents it.

Sources: the S3 API reference (PutBucketVersioning, GetBucketVersioning, ListObjectVersions,
GetObject, HeadObject, DeleteObject, DeleteObjects, CopyObject) and the user guide pages
"Working with objects in a versioning-enabled bucket", "... versioning-suspended bucket"
and "Working with delete markers".
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ElementTree
from urllib.parse import quote, unquote_plus, urlencode

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import (
    content_md5_header,
    error_code,
    http_status,
    signed_request,
    xml_namespace_free,
)


def _enable(s3, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _suspend(s3, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


@pytest.fixture
def versioned_bucket(s3, make_bucket) -> str:
    name = make_bucket("versioned")
    _enable(s3, name)
    return name


def _body(s3, bucket: str, key: str, **kwargs) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def _header(error_or_response, name: str) -> str | None:
    response = getattr(error_or_response, "response", error_or_response)
    return response["ResponseMetadata"]["HTTPHeaders"].get(name)


@pytest.fixture
def versions_of(http, s3_endpoint):
    """(key, version id, is latest, is delete marker) in S3's listing order, all pages.

    Read from the XML itself: boto3 splits Version and DeleteMarker entries into two
    lists and so loses their interleaving, which is part of what is tested."""

    def list_all(bucket: str) -> list[tuple[str, str, bool, bool]]:
        found: list[tuple[str, str, bool, bool]] = []
        markers = {"versions": ""}
        for _ in range(100):
            query = urlencode(markers, quote_via=quote, safe="")
            response = signed_request(http, s3_endpoint, "GET", f"/{bucket}", query=query)
            assert response.status_code == 200, response.content
            root = xml_namespace_free(ElementTree.fromstring(response.content))
            found += [
                (e.findtext("Key"), e.findtext("VersionId"), e.findtext("IsLatest") == "true",
                 e.tag == "DeleteMarker")
                for e in root if e.tag in ("Version", "DeleteMarker")
            ]
            if root.findtext("IsTruncated") != "true":
                return found
            markers["key-marker"] = root.findtext("NextKeyMarker") or ""
            markers["version-id-marker"] = root.findtext("NextVersionIdMarker") or ""
        raise AssertionError("ListObjectVersions did not finish in 100 pages")

    return list_all


# --- Put/GetBucketVersioning -------------------------------------------------------------


def test_never_versioned_bucket_has_no_status(s3, bucket) -> None:
    response = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in response
    assert "MFADelete" not in response


def test_enable_then_suspend(s3, bucket) -> None:
    _enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    _suspend(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    _enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_invalid_status_is_malformed_xml(s3, bucket) -> None:
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "On"})
    assert (http_status(caught.value), error_code(caught.value)) == (400, "MalformedXML")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


def test_not_xml_is_malformed_xml(http, s3_endpoint, bucket) -> None:
    body = b"<VersioningConfiguration><Status>Enabled</Status>"
    response = signed_request(http, s3_endpoint, "PUT", f"/{bucket}", query="versioning=",
                              headers={"Content-MD5": content_md5_header(body)}, body=body)
    assert response.status_code == 400
    assert b"<Code>MalformedXML</Code>" in response.content


def test_versioning_of_missing_bucket(s3) -> None:
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_versioning(Bucket="s3compat-no-such-bucket-versioning-0")
    assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchBucket")


# --- writes and reads by version id ------------------------------------------------------


def test_each_put_makes_a_version(s3, versioned_bucket) -> None:
    first = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"one")
    second = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"two")
    assert first["VersionId"] and second["VersionId"]
    assert first["VersionId"] != second["VersionId"]
    assert _body(s3, versioned_bucket, "k") == b"two"
    assert _body(s3, versioned_bucket, "k", VersionId=first["VersionId"]) == b"one"
    got = s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"])
    assert got["VersionId"] == first["VersionId"]
    assert got["ETag"] == f'"{hashlib.md5(b"one").hexdigest()}"'
    head = s3.head_object(Bucket=versioned_bucket, Key="k", VersionId=first["VersionId"])
    assert (head["VersionId"], head["ContentLength"]) == (first["VersionId"], 3)
    assert s3.head_object(Bucket=versioned_bucket, Key="k")["VersionId"] == second["VersionId"]


def test_delete_makes_a_delete_marker(s3, versioned_bucket) -> None:
    put = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"kept")
    deleted = s3.delete_object(Bucket=versioned_bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker_id = deleted["VersionId"]
    assert marker_id and marker_id != put["VersionId"]
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=versioned_bucket, Key="k")
    assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchKey")
    assert _header(caught.value, "x-amz-delete-marker") == "true"
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=versioned_bucket, Key="k")
    assert http_status(caught.value) == 404
    assert _header(caught.value, "x-amz-delete-marker") == "true"
    # The data is still there under its version id.
    assert _body(s3, versioned_bucket, "k", VersionId=put["VersionId"]) == b"kept"
    assert s3.list_objects_v2(Bucket=versioned_bucket).get("KeyCount") == 0


def test_get_of_a_delete_marker_by_id_is_method_not_allowed(s3, versioned_bucket) -> None:
    s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"x")
    marker_id = s3.delete_object(Bucket=versioned_bucket, Key="k")["VersionId"]
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as caught:
            call(Bucket=versioned_bucket, Key="k", VersionId=marker_id)
        assert http_status(caught.value) == 405
        assert _header(caught.value, "x-amz-delete-marker") == "true"
        assert _header(caught.value, "last-modified") is not None


def test_deleting_the_delete_marker_restores_the_object(s3, versioned_bucket) -> None:
    s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"back")
    marker_id = s3.delete_object(Bucket=versioned_bucket, Key="k")["VersionId"]
    removed = s3.delete_object(Bucket=versioned_bucket, Key="k", VersionId=marker_id)
    assert removed["DeleteMarker"] is True
    assert removed["VersionId"] == marker_id
    assert _body(s3, versioned_bucket, "k") == b"back"


def test_deleting_a_version_removes_it_for_good(s3, versioned_bucket) -> None:
    old = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"old")["VersionId"]
    s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"new")
    removed = s3.delete_object(Bucket=versioned_bucket, Key="k", VersionId=old)
    assert removed["VersionId"] == old
    assert "DeleteMarker" not in removed
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=old)
    assert (http_status(caught.value), error_code(caught.value)) == (404, "NoSuchVersion")
    assert _body(s3, versioned_bucket, "k") == b"new"


def test_deleting_the_latest_version_makes_the_previous_one_current(s3, versioned_bucket) -> None:
    s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"previous")
    latest = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"latest")["VersionId"]
    s3.delete_object(Bucket=versioned_bucket, Key="k", VersionId=latest)
    assert _body(s3, versioned_bucket, "k") == b"previous"


def test_malformed_version_id_is_invalid_argument(s3, versioned_bucket) -> None:
    s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=versioned_bucket, Key="k", VersionId="not a version id!")
    assert (http_status(caught.value), error_code(caught.value)) == (400, "InvalidArgument")


def test_null_version_is_the_object_written_before_versioning(s3, versions_of, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")
    _enable(s3, bucket)
    after = s3.put_object(Bucket=bucket, Key="k", Body=b"after")["VersionId"]
    assert after != "null"
    assert _body(s3, bucket, "k", VersionId="null") == b"before"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["VersionId"] == "null"
    assert versions_of(bucket) == [("k", after, True, False), ("k", "null", False, False)]


# --- Suspended ---------------------------------------------------------------------------


def test_suspended_bucket_writes_null_versions(s3, versions_of, versioned_bucket) -> None:
    kept = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"enabled")["VersionId"]
    _suspend(s3, versioned_bucket)
    put = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"suspended-1")
    # AWS's PutObject example for a versioning-suspended bucket has no x-amz-version-id.
    assert "VersionId" not in put
    s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"suspended-2")
    got = s3.get_object(Bucket=versioned_bucket, Key="k")
    assert (got["Body"].read(), got["VersionId"]) == (b"suspended-2", "null")
    assert s3.head_object(Bucket=versioned_bucket, Key="k")["VersionId"] == "null"
    # The second null write replaced the first; the Enabled-era version is kept.
    assert versions_of(versioned_bucket) == [
        ("k", "null", True, False),
        ("k", kept, False, False),
    ]


def test_suspended_delete_makes_a_null_delete_marker(s3, versions_of, versioned_bucket) -> None:
    kept = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"x")["VersionId"]
    _suspend(s3, versioned_bucket)
    deleted = s3.delete_object(Bucket=versioned_bucket, Key="k")
    assert (deleted["DeleteMarker"], deleted["VersionId"]) == (True, "null")
    assert versions_of(versioned_bucket) == [
        ("k", "null", True, True),
        ("k", kept, False, False),
    ]


# --- ListObjectVersions ------------------------------------------------------------------


def test_list_versions_order_and_is_latest(s3, versions_of, versioned_bucket) -> None:
    a1 = s3.put_object(Bucket=versioned_bucket, Key="a", Body=b"1")["VersionId"]
    a2 = s3.put_object(Bucket=versioned_bucket, Key="a", Body=b"22")["VersionId"]
    b1 = s3.put_object(Bucket=versioned_bucket, Key="b", Body=b"333")["VersionId"]
    b_marker = s3.delete_object(Bucket=versioned_bucket, Key="b")["VersionId"]
    assert versions_of(versioned_bucket) == [
        ("a", a2, True, False),
        ("a", a1, False, False),
        ("b", b_marker, True, True),
        ("b", b1, False, False),
    ]
    response = s3.list_object_versions(Bucket=versioned_bucket)
    assert response["IsTruncated"] is False
    sizes = {v["VersionId"]: v["Size"] for v in response["Versions"]}
    assert sizes == {a1: 1, a2: 2, b1: 3}
    assert all(v["ETag"].startswith('"') and "StorageClass" in v for v in response["Versions"])
    assert [m["Key"] for m in response["DeleteMarkers"]] == ["b"]


def test_list_versions_xml_interleaves_versions_and_markers(
    http, s3_endpoint, s3, versioned_bucket
) -> None:
    s3.put_object(Bucket=versioned_bucket, Key="a", Body=b"1")
    s3.delete_object(Bucket=versioned_bucket, Key="a")
    s3.put_object(Bucket=versioned_bucket, Key="b", Body=b"2")
    response = signed_request(http, s3_endpoint, "GET", f"/{versioned_bucket}", query="versions=")
    assert response.status_code == 200
    root = xml_namespace_free(ElementTree.fromstring(response.content))
    assert root.tag == "ListVersionsResult"
    entries = [(e.tag, e.findtext("Key"), e.findtext("IsLatest"))
               for e in root if e.tag in ("Version", "DeleteMarker")]
    assert entries == [
        ("DeleteMarker", "a", "true"),
        ("Version", "a", "false"),
        ("Version", "b", "true"),
    ]


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_list_versions_pages_cover_everything_once(s3, versions_of, versioned_bucket, page_size) -> None:
    for key in ("a", "b", "c"):
        for body in (b"1", b"2"):
            s3.put_object(Bucket=versioned_bucket, Key=key, Body=body)
    s3.delete_object(Bucket=versioned_bucket, Key="b")
    everything = versions_of(versioned_bucket)
    assert len(everything) == 7
    paged = []
    key_marker, version_marker = "", ""
    for _ in range(20):
        response = s3.list_object_versions(Bucket=versioned_bucket, MaxKeys=page_size,
                                           KeyMarker=key_marker, VersionIdMarker=version_marker)
        entries = [(v["Key"], v["VersionId"]) for v in response.get("Versions", [])]
        entries += [(m["Key"], m["VersionId"]) for m in response.get("DeleteMarkers", [])]
        assert len(entries) <= page_size
        paged += entries
        if not response["IsTruncated"]:
            break
        key_marker = response["NextKeyMarker"]
        version_marker = response["NextVersionIdMarker"]
    assert sorted(paged) == sorted((key, version) for key, version, _, _ in everything)
    assert len(paged) == len(everything)


def test_list_versions_key_marker_starts_after_the_key(s3, versioned_bucket) -> None:
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=versioned_bucket, Key=key, Body=b"x")
    response = s3.list_object_versions(Bucket=versioned_bucket, KeyMarker="a")
    assert [v["Key"] for v in response["Versions"]] == ["b", "c"]
    assert response["KeyMarker"] == "a"


def test_list_versions_prefix_and_delimiter(s3, versioned_bucket) -> None:
    for key in ("photos/2024/a.jpg", "photos/2025/b.jpg", "photos/c.jpg", "docs/d.txt"):
        s3.put_object(Bucket=versioned_bucket, Key=key, Body=b"x")
    response = s3.list_object_versions(Bucket=versioned_bucket, Prefix="photos/", Delimiter="/")
    assert [v["Key"] for v in response["Versions"]] == ["photos/c.jpg"]
    assert [p["Prefix"] for p in response["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    assert (response["Prefix"], response["Delimiter"]) == ("photos/", "/")


def test_list_versions_of_a_never_versioned_bucket_shows_null(s3, versions_of, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")
    assert versions_of(bucket) == [("k", "null", True, False)]


def test_list_versions_url_encoding_round_trips(s3, versioned_bucket) -> None:
    key = "a b/c+d/\u00e9"
    s3.put_object(Bucket=versioned_bucket, Key=key, Body=b"x")
    # Asked for explicitly, the encoding is left for the caller to undo.
    response = s3.list_object_versions(Bucket=versioned_bucket, EncodingType="url")
    assert response["EncodingType"] == "url"
    assert [unquote_plus(v["Key"]) for v in response["Versions"]] == [key]
    # boto3 asks for it by itself and decodes.
    response = s3.list_object_versions(Bucket=versioned_bucket)
    assert [v["Key"] for v in response["Versions"]] == [key]


# --- DeleteObjects and CopyObject --------------------------------------------------------


def test_delete_objects_with_and_without_version_ids(s3, versioned_bucket) -> None:
    old = s3.put_object(Bucket=versioned_bucket, Key="a", Body=b"1")["VersionId"]
    s3.put_object(Bucket=versioned_bucket, Key="a", Body=b"2")
    s3.put_object(Bucket=versioned_bucket, Key="b", Body=b"3")
    response = s3.delete_objects(
        Bucket=versioned_bucket,
        Delete={"Objects": [{"Key": "a", "VersionId": old}, {"Key": "b"}]},
    )
    deleted = {d["Key"]: d for d in response["Deleted"]}
    assert deleted["a"]["VersionId"] == old
    assert "DeleteMarker" not in deleted["a"]
    assert deleted["b"]["DeleteMarker"] is True
    marker_id = deleted["b"]["DeleteMarkerVersionId"]
    assert marker_id
    # Removing that delete marker by version id reports it as a delete marker.
    response = s3.delete_objects(
        Bucket=versioned_bucket, Delete={"Objects": [{"Key": "b", "VersionId": marker_id}]}
    )
    (removed,) = response["Deleted"]
    assert (removed["VersionId"], removed["DeleteMarker"]) == (marker_id, True)
    assert removed["DeleteMarkerVersionId"] == marker_id
    assert _body(s3, versioned_bucket, "b") == b"3"


def test_copy_from_a_source_version(s3, versioned_bucket) -> None:
    old = s3.put_object(Bucket=versioned_bucket, Key="src", Body=b"old",
                        Metadata={"era": "old"})["VersionId"]
    s3.put_object(Bucket=versioned_bucket, Key="src", Body=b"new")
    copied = s3.copy_object(Bucket=versioned_bucket, Key="dst",
                            CopySource={"Bucket": versioned_bucket, "Key": "src",
                                        "VersionId": old})
    assert copied["CopySourceVersionId"] == old
    assert copied["VersionId"] and copied["VersionId"] != old
    got = s3.get_object(Bucket=versioned_bucket, Key="dst")
    assert (got["Body"].read(), got["Metadata"], got["VersionId"]) == (
        b"old", {"era": "old"}, copied["VersionId"])


def test_copy_from_a_delete_marker_version_is_refused(s3, versioned_bucket) -> None:
    s3.put_object(Bucket=versioned_bucket, Key="src", Body=b"x")
    marker_id = s3.delete_object(Bucket=versioned_bucket, Key="src")["VersionId"]
    with pytest.raises(ClientError) as caught:
        s3.copy_object(Bucket=versioned_bucket, Key="dst",
                       CopySource={"Bucket": versioned_bucket, "Key": "src",
                                   "VersionId": marker_id})
    assert http_status(caught.value) == 400
