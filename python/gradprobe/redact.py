"""Redaction of secrets in texts that gradprobe writes (events, warnings, errors).

Webhook URLs carry their token in the path or query, SMTP and proxy URLs in the user-info; an
exception from urllib or smtplib quotes them. What survives redaction is the scheme, host and
port: enough to tell which server failed, nothing that grants access. A leaf module: imports
nothing of gradprobe.
"""

from __future__ import annotations

import re
import urllib.parse

REDACTED = "<redacted>"

# A URL with or without a scheme: [scheme://][user[:password]@]host[:port][/path][?query][#fragment].
# Without a scheme, a host needs a dot and a path (hooks.slack.com/services/...), so plain words and
# dotted layer names (encoder.layer.0) are left alone.
_URL = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/@'\"<>]*@)?(?P<host>[^\s/?#'\"<>:]*)(?P<port>:\d+)?"
    r"(?P<rest>[/?#][^\s'\"<>]*)?"
    r"|(?P<bare_userinfo>\b[^\s/@'\"<>:]+(?::[^\s/@'\"<>]*)?@)?(?P<bare_host>\b[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)"
    r"(?P<bare_port>:\d+)?(?P<bare_rest>[/?][^\s'\"<>]+)")
# Values that look like credentials: key=value or key: value for secret-sounding keys, and long
# unbroken runs of token characters (API keys, Slack/Twilio tokens, JWTs).
_SECRET_PAIR = re.compile(r"(?i)\b([a-z_]*(?:token|secret|password|passwd|api[_-]?key|signature|sig|auth)[a-z_]*)"
                          r"(\s*[=:]\s*)([^\s&,;'\"]+)")
_TOKEN_LIKE = re.compile(r"\b[A-Za-z0-9_\-]{32,}\b|\b[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]+\b")


def _url_replacement(match: re.Match[str]) -> str:
    if match.group("scheme") is not None:
        rest = "/" + REDACTED if match.group("rest") or match.group("userinfo") else ""
        return f"{match.group('scheme')}{match.group('host')}{match.group('port') or ''}{rest}"
    return f"{match.group('bare_host')}{match.group('bare_port') or ''}/{REDACTED}"


def redact(text: str, limit: int = 300) -> str:
    """text with every URL cut to scheme, host and port, and credential-like values replaced."""
    text = _URL.sub(_url_replacement, text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _TOKEN_LIKE.sub(REDACTED, text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_url(url: str) -> str:
    """scheme://host[:port] of a URL, also of one given without a scheme; never its path or query."""
    parts = urllib.parse.urlsplit(url if "://" in url else "//" + url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port: say nothing of it
        port = ""
    return f"{parts.scheme or '(no scheme)'}://{parts.hostname or '?'}{port}"
