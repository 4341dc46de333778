"""The HTTP API under load and under fuzzers, on a real serve.py: never a 5xx, bad requests
answered 400/413, and every answer as the API's own OpenAPI schema declares it."""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from bench.serve_load import measure, post, problems
from bench.server import HOST, Server, running_server
from tests.conftest import requires_fmnist, tiny_checkpoint
from tests.image_files import write_awkward_good_images
from transferlab.inference.serve.api import build_api

pytestmark = [pytest.mark.slow, requires_fmnist]
# deadline off: a shared 2-core machine makes single answers slow; no example database in the repo
FUZZ = settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve_fuzz")
    with running_server(tiny_checkpoint(tmp, "small_cnn"), tmp) as server:
        yield server


def test_load_bench_answers_every_request_as_it_should(server: Server):
    """bench/serve_load.py, briefly: 2 clients of photos, then 1 more sending a text file and
    50 MB bodies; no 5xx or dropped request, 400/413 for the bad ones, no 50 MB held."""
    phases = measure(server, clients=2, bad_clients=1, seconds=2)
    assert problems(phases, bad_clients=1) == []
    bad = phases["good + bad"].bad
    assert set(bad["text file"]) == {400}
    assert set(bad["50 MB, Content-Length"]) == set(bad["50 MB, chunked"]) == {413}


# The API's schema as build_api declares it: known at collection, before any server runs
# (schemathesis.pytest.from_fixture would load it from the server, but breaks on pytest 9.2).
OPENAPI = build_api([], max_upload_bytes=1, max_pixels=1).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_the_server_serves_the_schema_that_is_fuzzed(server: Server):
    with urllib.request.urlopen(f"{server.url}/api/openapi.json", timeout=30) as response:
        served = json.load(response)
    assert served.pop("servers") == [{"url": "/api"}]
    assert served == OPENAPI


@schema.parametrize()
@FUZZ
def test_api_answers_as_its_schema_says(case: schemathesis.Case, server: Server):
    """Every operation and undeclared method, valid and invalid forms: no 5xx, a declared status,
    a body matching its schema. Not checked: that schema-valid bytes are accepted, since the
    schema cannot say "a decodable image"."""
    case.call_and_validate(f"{server.url}/api", excluded_checks=[positive_data_acceptance])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    folder = tmp_path_factory.mktemp("seeds")
    return [(p.name, p.read_bytes()) for p in write_awkward_good_images(folder, (200, 60, 40))]


@FUZZ
@given(data=st.data())
def test_damaged_images_get_an_answer_not_a_crash(server: Server, seeds, data: st.DataObject):
    """Real PNG/JPEG files cut short or with bytes overwritten, and odd file names: decoders
    fail in many ways, and each must become a 400 (or a 200 when the damage is harmless)."""
    name, original = data.draw(st.sampled_from(seeds))
    image = bytearray(original[: data.draw(st.integers(1, len(original)))])
    for _ in range(data.draw(st.integers(0, 8))):
        image[data.draw(st.integers(0, len(image) - 1))] = data.draw(st.integers(0, 255))
    name = data.draw(st.sampled_from([name, "x." + "a" * 300, "../../etc/passwd", "ü.png"]))
    conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
    try:
        status = post(conn, name, bytes(image))
    finally:
        conn.close()
    assert status in (200, 400, 413), (name, status)
