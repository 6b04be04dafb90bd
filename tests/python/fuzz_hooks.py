"""Schemathesis hooks for tests/api/fuzz.rs: strategies for Tenantry's custom scalars, and the one
check that matters for the contract. schemathesis's own `not_a_server_error` counts every
GraphQL error with a path as a server failure, but Tenantry answers domain refusals
(NOT_FOUND, FORBIDDEN, ...) as coded GraphQL errors by contract; what must never happen is a
5xx, or an INTERNAL error (a failure the server did not expect)."""

import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

# BigInt is a 64-bit integer serialised as a JSON number; generate beyond its range too.
schemathesis.graphql.scalar(
    "BigInt", st.integers(min_value=-(2**70), max_value=2**70).map(nodes.Int)
)
# JSON accepts any GraphQL literal.
schemathesis.graphql.scalar(
    "JSON",
    st.one_of(
        st.text().map(nodes.String),
        st.integers().map(nodes.Int),
        st.booleans().map(nodes.Boolean),
        st.lists(st.text().map(nodes.String), max_size=4).map(nodes.List),
    ),
)
schemathesis.graphql.scalar("UUID", st.uuids().map(str).map(nodes.String))


@schemathesis.check
def no_server_failure(ctx, response, case):
    """No 5xx and no INTERNAL error, whatever the input."""
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    if '"INTERNAL"' in response.text or "internal error" in response.text:
        raise AssertionError(f"an INTERNAL error: {response.text[:500]}")
