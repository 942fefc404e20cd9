"""schemathesis hooks for railcast's contract fuzzing (loaded with SCHEMATHESIS_HOOKS=hooks).

Two checks of the order in which the server refuses a request, which schemathesis's own checks
cannot see because every status involved is documented. They read the identity under test from
RAILCAST_FUZZ_IDENTITY (admin, viewer, anonymous) and its token from RAILCAST_FUZZ_TOKEN.

- ``viewer_refused_by_role``: with the viewer's token, an admin-only operation (its summary ends
  with "Admin.", the contract's convention: "each says the role it needs (403 below it)") must
  answer 403 whatever the body, the content type or the path parameters: the role decides before
  the input is looked at, so a viewer learns nothing about the input checks of admin routes.
- ``anonymous_refused_by_token``: with no valid token, an operation that needs one must answer 401
  whatever the rest of the request.

Requests that schemathesis sends with another method than the operation's (405 tests) or
without the identity's own token (its auth checks) are not judged here.

The WHEP bodies (``application/sdp``, ``application/trickle-ice-sdpfrag``) are text: a generated
string is sent as its UTF-8 bytes.
"""

from __future__ import annotations

import os

import schemathesis

IDENTITY = os.environ.get("RAILCAST_FUZZ_IDENTITY", "")
TOKEN = os.environ.get("RAILCAST_FUZZ_TOKEN", "")


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def _text(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", errors="surrogatepass")


def _is_admin_only(case) -> bool:
    summary = (case.operation.definition.raw.get("summary") or "").strip()
    return summary.endswith("Admin.")


def _needs_token(case) -> bool:
    raw = case.operation.definition.raw
    security = raw.get("security", case.operation.schema.raw_schema.get("security", []))
    # `security: [{}]` (an empty requirement) or no requirement at all: no token needed.
    return bool(security) and all(requirement for requirement in security)


def _same_method(case) -> bool:
    return case.method.upper() == case.operation.method.upper()


def _authorization(response) -> str:
    headers = response.request.headers
    return headers.get("Authorization") or headers.get("authorization") or ""


@schemathesis.check
def viewer_refused_by_role(ctx, response, case):
    if IDENTITY != "viewer" or not _same_method(case) or not _is_admin_only(case):
        return None
    if _authorization(response) != f"Bearer {TOKEN}":
        return None
    if response.status_code != 403:
        raise AssertionError(
            f"An admin-only operation answered the viewer {response.status_code}, not 403: "
            "the role must be checked before the request's input"
        )
    return None


@schemathesis.check
def anonymous_refused_by_token(ctx, response, case):
    if IDENTITY != "anonymous" or not _same_method(case) or not _needs_token(case):
        return None
    if response.status_code != 401:
        raise AssertionError(
            f"An operation that needs a token answered {response.status_code} to a request "
            "without a valid one, not 401: the token must be checked first"
        )
    return None
