"""The fleet's universe document in S3 (moto's server on loopback): conditional writes."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import boto3
import pytest

from secmaster.shared_universe import Added, BadUniverseError, S3Universe, UniverseDoc

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def client(s3_url: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_url, region_name="eu-west-1")


@pytest.fixture
def store(client: Any) -> S3Universe:
    bucket = f"u-{uuid.uuid4().hex[:10]}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return S3Universe(client, bucket, "collector/universe.json")


def add(stream: tuple[str, str, str]) -> Any:
    def change(doc: UniverseDoc) -> UniverseDoc | None:
        if stream in doc.streams:
            return None
        doc.streams[stream] = Added(NOW, "test")
        doc.initialized = True
        return doc

    return change


def test_a_missing_document_is_an_uninitialized_empty_universe(store: S3Universe) -> None:
    doc, etag = store.read()

    assert (doc.streams, doc.initialized, etag) == ({}, False, None)


def test_writes_round_trip_byte_stably(store: S3Universe) -> None:
    """What is written reads back equal, and writing it again gives the same bytes."""
    store.update(add(("binance", "BTCUSDT", "trade")))
    doc, _ = store.read()

    assert doc.streams == {("binance", "BTCUSDT", "trade"): Added(NOW, "test")}
    assert UniverseDoc.from_bytes(doc.to_bytes()).to_bytes() == doc.to_bytes()


def test_concurrent_tracks_never_lose_one(store: S3Universe) -> None:
    """Eight writers at once, each adding its own stream: all eight are in the document."""
    streams = [("coinbase", f"C{i}-USD", "trade") for i in range(8)]
    barrier = threading.Barrier(len(streams))

    def run(stream: tuple[str, str, str]) -> None:
        barrier.wait()
        store.update(add(stream))

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert set(store.read()[0].streams) == set(streams)


def test_a_hostile_document_is_refused_not_trusted(store: S3Universe, client: Any) -> None:
    """Not JSON, no version, a stream without its fields: one clear error, nothing used."""
    for body in (b"<html>", b'{"streams": []}', b'{"version": 1, "streams": [{"exchange": 1}]}'):
        client.put_object(Bucket=store.bucket, Key=store.key, Body=body)
        with pytest.raises(BadUniverseError):
            store.read()
