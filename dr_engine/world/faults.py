"""Fault injection over the wire: a WSGI wrapper around moto's server app.

Rules, set at run time through a small control endpoint, make chosen ``service``/``action``
pairs answer with throttling errors, 503s, HTML 500 pages (which botocore cannot parse) or a
delay before the real answer, so retry and timeout behaviour is tested through real HTTP, real
botocore parsing and real botocore retries.

Control endpoint (on the moto server's own address)::

    GET    /_dr/faults   -> {"rules": [...]}     (with a ``hits`` count per rule)
    POST   /_dr/faults   <- a rule or a list of rules (JSON)
    DELETE /_dr/faults   -> clears every rule

A rule: ``{"service": "route53", "action": "ChangeResourceRecordSets", "kind": "throttle",
"times": 2}``. ``service`` is the signing name seen in the request (``cloudwatch`` is accepted for
``monitoring``); ``action`` is the API operation (``*`` for any); ``kind`` is ``throttle``,
``unavailable``, ``html500`` or ``delay`` (with ``delay`` seconds); ``times`` is how many
matching requests to affect (``-1``: all).

:class:`FaultControl` is the client side used by tests.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, Literal
from urllib.parse import parse_qs

CONTROL_PATH = "/_dr/faults"
FaultKind = Literal["throttle", "unavailable", "html500", "delay"]
_ALIASES = {"cloudwatch": "monitoring"}
_MODEL_NAMES = {"monitoring": "cloudwatch"}
_CREDENTIAL = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class FaultRule:
    """One fault: which requests, what happens, how often."""

    service: str
    action: str = "*"
    kind: FaultKind = "throttle"
    times: int = 1
    delay: float = 0.0
    hits: int = field(default=0)

    def matches(self, service: str, action: str) -> bool:
        """True when this rule applies to the request and has uses left."""
        wanted = _ALIASES.get(self.service, self.service)
        return wanted == service and self.action in ("*", action) and (self.times < 0 or self.hits < self.times)


@cache
def _model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(_MODEL_NAMES.get(service, service))


@cache
def _rest_routes(service: str) -> list[tuple[str, re.Pattern[str], frozenset[str], int, str, frozenset[str]]]:
    """(method, path regex, query keys, literal length, operation, required headers) for a REST service."""
    routes = []
    model = _model(service)
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri, _, query = str(http.get("requestUri", "/")).partition("?")
        literal = len(re.sub(r"\{[^}]+\}", "", uri))
        pattern = re.sub(r"\\\{[^}]+?\\\+\\\}", ".+", re.escape(uri))
        pattern = re.sub(r"\\\{[^}]+?\\\}", "[^/]+", pattern)
        # Operations sharing a URI differ by required query keys and headers
        # (UploadPartCopy: ?partNumber&uploadId; CopyObject: x-amz-copy-source).
        shape = model.operation_model(name).input_shape
        required = [shape.members[m].serialization for m in (shape.required_members if shape else [])]
        keys = frozenset([*(p.split("=", 1)[0] for p in query.split("&") if p and not p.startswith("x-id")),
                          *(str(r.get("name")) for r in required if r.get("location") == "querystring")])
        headers = frozenset("HTTP_" + str(r.get("name")).upper().replace("-", "_")
                            for r in required if r.get("location") == "header")
        routes.append((str(http.get("method", "GET")), re.compile(pattern.rstrip("/") + "/?"), keys, literal, name,
                       headers))
    return routes


def service_of(environ: dict[str, Any]) -> str:
    """The signing name of the request (from the SigV4 credential scope)."""
    found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else ""


def operation_of(environ: dict[str, Any], service: str) -> str:
    """The API operation of a request, for every protocol our actions use."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return str(target.rsplit(".", 1)[-1])
    path = environ.get("PATH_INFO", "")
    if "/operation/" in path:
        return str(path.rsplit("/", 1)[-1])
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if "Action" in query:
        return str(query["Action"][0])
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        body = _peek_body(environ)
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    try:
        routes = _rest_routes(service)
    except Exception:  # an unknown service simply has no operation names
        return ""
    method = environ.get("REQUEST_METHOD", "GET")
    best: tuple[int, int, int, str] | None = None
    for verb, regex, keys, literal, name, headers in routes:
        if verb == method and regex.fullmatch(path) and keys <= set(query) and all(h in environ for h in headers):
            score = (len(keys), len(headers), literal, name)
            best = score if best is None or score > best else best
    return best[3] if best else ""


def _peek_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for the wrapped app."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def _cbor_text(value: str) -> bytes:
    data = value.encode()
    if len(data) < 24:
        return bytes([0x60 + len(data)]) + data
    return bytes([0x78, len(data)]) + data


def _cbor_map(values: dict[str, str]) -> bytes:
    """A minimal CBOR encoder for a small map of short strings (error bodies only)."""
    out = bytes([0xA0 + len(values)])
    for key, value in values.items():
        out += _cbor_text(key) + _cbor_text(value[:255])
    return out


def wire_protocol(environ: dict[str, Any], service: str) -> str:
    """The protocol the client actually speaks (botocore may pick one of several a service offers)."""
    if "cbor" in environ.get("CONTENT_TYPE", "") or environ.get("HTTP_SMITHY_PROTOCOL"):
        return "smithy-rpc-v2-cbor"
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    return str(_model(service).protocol)


def error_response(service: str, protocol: str, kind: FaultKind) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status, headers and body of a fault in the request's wire protocol."""
    if kind == "html500":
        page = b"<!doctype html><html><head><title>500 Internal Server Error</title></head>" \
               b"<body><h1>Internal Server Error</h1></body></html>"
        return "500 INTERNAL SERVER ERROR", [("Content-Type", "text/html")], page
    status = "503 SERVICE UNAVAILABLE" if kind == "unavailable" or service == "s3" else "400 BAD REQUEST"
    if kind == "unavailable":
        code = "ServiceUnavailable"
    elif service == "s3":
        code = "SlowDown"
    else:
        code = "ThrottlingException" if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor") else "Throttling"
    message = "Rate exceeded (injected fault)" if kind == "throttle" else "Service unavailable (injected fault)"
    headers = [("x-amzn-RequestId", "dr-fault")]
    if protocol in ("json", "rest-json"):
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, [*headers, ("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", code)], body
    if protocol == "smithy-rpc-v2-cbor":
        body = _cbor_map({"__type": code, "message": message})
        return status, [*headers, ("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")], body
    if service == "s3":
        xml = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>dr-fault</RequestId></Error>"
    else:
        xml = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
               "<RequestId>dr-fault</RequestId></ErrorResponse>")
    return status, [*headers, ("Content-Type", "text/xml")], xml.encode()


class FaultInjector:
    """WSGI middleware: apply matching fault rules, pass everything else to ``app``."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve the control endpoint, apply a matching rule, or pass the request through."""
        if environ.get("PATH_INFO") == CONTROL_PATH:
            return self._control(environ, start_response)
        service = service_of(environ) if self.rules else ""
        rule = self._match(environ, service) if service else None
        if rule is not None:
            if rule.kind == "delay":
                time.sleep(rule.delay)
            else:
                status, headers, body = error_response(service, wire_protocol(environ, service), rule.kind)
                start_response(status, [*headers, ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)

    def _match(self, environ: dict[str, Any], service: str) -> FaultRule | None:
        action = operation_of(environ, service)
        with self._lock:
            for rule in self.rules:
                if rule.matches(service, action):
                    rule.hits += 1
                    return rule
        return None

    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method == "POST":
                payload = json.loads(_peek_body(environ) or b"[]")
                added = [FaultRule(**{k: v for k, v in item.items() if k != "hits"})
                         for item in (payload if isinstance(payload, list) else [payload])]
                with self._lock:
                    self.rules.extend(added)
            elif method == "DELETE":
                with self._lock:
                    self.rules.clear()
        except (TypeError, ValueError) as exc:
            body = json.dumps({"error": str(exc)}).encode()
            start_response("400 BAD REQUEST", [("Content-Type", "application/json")])
            return [body]
        with self._lock:
            listed = [asdict(r) for r in self.rules]
        body = json.dumps({"rules": listed}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


class FaultControl:
    """Client for the control endpoint of a fault-injecting moto server."""

    def __init__(self, endpoint_url: str, timeout: float = 5.0) -> None:
        self.url = endpoint_url.rstrip("/") + CONTROL_PATH
        self.timeout = timeout

    def _send(self, method: str, payload: Any = None) -> list[dict[str, Any]]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            rules: list[dict[str, Any]] = json.loads(answer.read())["rules"]
            return rules

    def add(self, service: str, action: str = "*", kind: FaultKind = "throttle", times: int = 1,
            delay: float = 0.0) -> None:
        """Add a rule (see the module docstring)."""
        self._send("POST", {"service": service, "action": action, "kind": kind, "times": times, "delay": delay})

    def rules(self) -> list[dict[str, Any]]:
        """Current rules with their ``hits``."""
        return self._send("GET")

    def hits(self, service: str, action: str = "*") -> int:
        """Total requests affected by rules for this service/action."""
        return sum(int(r["hits"]) for r in self.rules() if r["service"] == service and r["action"] == action)

    def clear(self) -> None:
        """Remove every rule."""
        self._send("DELETE")
