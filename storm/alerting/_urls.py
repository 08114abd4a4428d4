"""Sources and sinks of `storm alerts run` named by URL: each URL becomes one
component spec of the project's sources (storm.sources, storm.kafka) or sinks
(storm.sinks) with its settings. A URL that names no known scheme, or lacks a
part its scheme needs, is refused with a message naming it and the schemes."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from .._component import ComponentSpec
from .._errors import ConfigError

#: scheme -> the form of its URL (shown when a URL is wrong).
SOURCE_SCHEMES = {
    "tail": "tail:///path/app.jsonl (a file of JSON lines, followed like tail -F; ?from=end)",
    "http": "http://127.0.0.1:8080 (listens for POSTs of JSON lines or a JSON array)",
    "redis": "redis://host:port/stream (a Redis stream; ?group=NAME, ?db=N)",
    "kafka": "kafka://host:port/topic (a JSON object per record; ?group=NAME)",
}
SINK_SCHEMES = {
    "stdout": "stdout: (one line per alert change)",
    "file": "file:///path/alerts.jsonl (JSON lines)",
    "webhook+http": "webhook+http://host:port/path (POSTs JSON arrays of alerts)",
    "webhook+https": "webhook+https://host/path",
    "redis": "redis://host:port/stream (XADD per alert; ?maxlen=N, ?db=N)",
}


class UrlError(ConfigError):
    """A --source or --sink URL is wrong; the message names it and the schemes."""


def _fail(option: str, url: str, why: str, table: dict[str, str]) -> UrlError:
    kinds = "sources" if option == "--source" else "sinks"
    return UrlError(f"{option} '{url}': {why}; the {kinds} are: {', '.join(table.values())}")


def _query(option: str, url: str, parts: urllib.parse.SplitResult, allowed: set[str],
           table: dict[str, str]) -> dict[str, str]:
    q = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(q) - allowed)
    if unknown:
        shown = ", ".join(sorted(allowed)) or "none"
        raise _fail(option, url, f"unknown parameter '{unknown[0]}' (allowed: {shown})", table)
    return q


def _path_of(option: str, url: str, parts: urllib.parse.SplitResult, table: dict[str, str]) -> Path:
    """The file of tail:///abs/path, tail:rel/path (relative to here) or file:..."""
    if parts.netloc:
        raise _fail(option, url, f"'{parts.netloc}' is read as a host; write {parts.scheme}:///absolute/path "
                                 f"(three slashes) or {parts.scheme}:relative/path", table)
    raw = urllib.parse.unquote(parts.path)
    if not raw or raw == "/":
        raise _fail(option, url, "no file path", table)
    return Path(raw).resolve()


def _host_port(option: str, url: str, parts: urllib.parse.SplitResult, table: dict[str, str],
               default_port: int | None) -> tuple[str, int]:
    try:
        port = parts.port
    except ValueError:
        raise _fail(option, url, "the port is not a number from 0 to 65535", table) from None
    host = parts.hostname or ""
    if not host:
        raise _fail(option, url, "no host", table)
    if port is None:
        if default_port is None:
            raise _fail(option, url, "no port (write host:port)", table)
        port = default_port
    return host, port


def _path_name(option: str, url: str, parts: urllib.parse.SplitResult, what: str,
               table: dict[str, str]) -> str:
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    if not name or "/" in name:
        raise _fail(option, url, f"the path must be the {what} alone (…/{what})", table)
    return name


def source_spec(url: str, name: str) -> ComponentSpec:
    """The spout for a --source URL, named ``name``; each emits ``[event]``."""
    from ..sources import HttpSpout, RedisStreamSpout, TailSpout

    option, table = "--source", SOURCE_SCHEMES
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "tail":
        q = _query(option, url, parts, {"from"}, table)
        if q.get("from", "start") not in ("start", "end"):
            raise _fail(option, url, "'from' must be start or end", table)
        return TailSpout.spec(name=name, outputs=["event"], config={
            "sources.tail.path": str(_path_of(option, url, parts, table)), "sources.tail.json": True,
            "sources.tail.from.end": q.get("from") == "end"})
    if scheme == "http":
        _query(option, url, parts, set(), table)
        host, port = _host_port(option, url, parts, table, None)
        if parts.path not in ("", "/"):
            raise _fail(option, url, "the HTTP source takes POSTs on any path; give no path", table)
        return HttpSpout.spec(name=name, config={"sources.http.host": host, "sources.http.port": port})
    if scheme == "https":
        raise _fail(option, url, "the HTTP source serves plain HTTP (put TLS in front of it); use http://", table)
    if scheme == "redis":
        q = _query(option, url, parts, {"group", "db"}, table)
        host, port = _host_port(option, url, parts, table, 6379)
        stream = _path_name(option, url, parts, "stream", table)
        conf: dict[str, Any] = {"sources.redis.url": f"redis://{host}:{port}/{q.get('db', '0')}",
                                "sources.redis.stream": stream}
        if q.get("group"):
            conf["sources.redis.group"] = q["group"]
        return RedisStreamSpout.spec(name=name, config=conf)
    if scheme == "kafka":
        from ..kafka import KafkaSpout

        q = _query(option, url, parts, {"group"}, table)
        if not parts.netloc:
            raise _fail(option, url, "no bootstrap servers (kafka://host:port/topic)", table)
        for server in parts.netloc.split(","):
            _host_port(option, url, urllib.parse.urlsplit(f"//{server}"), table, None)
        topic = _path_name(option, url, parts, "topic", table)
        conf = {"kafka.bootstrap.servers": parts.netloc, "kafka.spout.topics": [topic],
                "kafka.spout.value.json": True, "kafka.spout.record.translator": "value"}
        if q.get("group"):
            conf["kafka.spout.group.id"] = q["group"]
        return KafkaSpout.spec(name=name, outputs=["event"], config=conf)
    raise _fail(option, url, f"unknown scheme '{parts.scheme}'" if parts.scheme else "no scheme", table)


def sink_spec(url: str, name: str, inputs: list[ComponentSpec]) -> ComponentSpec:
    """The sink bolt for a --sink URL, named ``name``, reading ``inputs``."""
    from ..sinks import FileSink, RedisSink, StdoutSink, WebhookSink

    option, table = "--sink", SINK_SCHEMES
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "stdout":
        if parts.netloc or parts.path or parts.query:
            raise _fail(option, url, "write it as 'stdout:' alone", table)
        return StdoutSink.spec(name=name, inputs=inputs)
    if scheme == "file":
        _query(option, url, parts, set(), table)
        path = _path_of(option, url, parts, table)
        return FileSink.spec(name=name, inputs=inputs, config={"sinks.file.path": str(path)})
    if scheme in ("webhook+http", "webhook+https"):
        target = url.split("+", 1)[1]
        inner = urllib.parse.urlsplit(target)
        _host_port(option, url, inner, table, 443 if inner.scheme == "https" else 80)
        return WebhookSink.spec(name=name, inputs=inputs, config={"sinks.webhook.url": target})
    if scheme in ("http", "https"):
        raise _fail(option, url, f"a webhook sink is written webhook+{scheme}://...", table)
    if scheme == "redis":
        q = _query(option, url, parts, {"db", "maxlen"}, table)
        host, port = _host_port(option, url, parts, table, 6379)
        conf: dict[str, Any] = {"sinks.redis.url": f"redis://{host}:{port}/{q.get('db', '0')}",
                                "sinks.redis.stream": _path_name(option, url, parts, "stream", table)}
        if q.get("maxlen"):
            if not q["maxlen"].isdigit():
                raise _fail(option, url, "'maxlen' must be a whole number of entries", table)
            conf["sinks.redis.maxlen"] = int(q["maxlen"])
        return RedisSink.spec(name=name, inputs=inputs, config=conf)
    raise _fail(option, url, f"unknown scheme '{parts.scheme}'" if parts.scheme else "no scheme", table)


def component_names(urls: list[str], kind: str) -> list[str]:
    """Stable component names: the scheme (``tail``, ``webhook``), numbered when repeated."""
    base = [(urllib.parse.urlsplit(u).scheme.split("+")[0].lower() or kind) for u in urls]
    names = []
    for i, b in enumerate(base):
        n = base.count(b)
        names.append(f"{kind}-{b}" + (f"-{base[:i + 1].count(b)}" if n > 1 else ""))
    return names


def check_urls(sources: list[str], sinks: list[str]) -> None:
    """Raise UrlError for the first bad URL, before anything is built."""
    for u in sources:
        source_spec(u, "source")
    for u in sinks:
        sink_spec(u, "sink", [])
