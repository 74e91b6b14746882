"""Schemathesis hooks: realistic data beside the generated, so stateful runs get past initialize and
follow a transfer's links (upload, overview, details, download, confirm).

The party token acts for BROKER_ST_PARTY, which sends to itself, so one token may take every step
of the lifecycle.
"""
import os

import schemathesis
from hypothesis import strategies as st

# A tus PATCH (or a creation with upload) carries raw bytes, as an octet-stream does.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

PARTY = os.environ.get("BROKER_ST_PARTY", "0192:111111111")
RESOURCE = os.environ.get("BROKER_ST_RESOURCE", "test-resource")


@schemathesis.hook("before_generate_body").apply_to(path="/broker/api/v1/filetransfer", method="POST")
def realistic_initialize(context, strategy):
    valid = st.fixed_dictionaries(
        {
            "fileName": st.text(min_size=1, max_size=40).filter(lambda s: s.strip()),
            "resourceId": st.sampled_from([RESOURCE, f"urn:altinn:resource:{RESOURCE}"]),
            "sendersFileTransferReference": st.text(min_size=1, max_size=20),
            "sender": st.just(PARTY),
            "recipients": st.just([PARTY]),
        },
        optional={
            "propertyList": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
            "checksum": st.just(""),
        },
    )
    return st.one_of(strategy, valid)


@schemathesis.hook("before_generate_query").apply_to(path="/broker/api/v1/filetransfer", method="GET")
def realistic_search(context, strategy):
    return st.one_of(strategy, st.fixed_dictionaries({"resourceId": st.just(RESOURCE)}))


@schemathesis.hook("before_generate_path_parameters").apply_to(path_regex="/resource/")
def realistic_resource(context, strategy):
    return st.one_of(strategy, st.just({"resourceId": RESOURCE}))
