"""JSON POST to a webhook (Slack, or a generic body; SMS gateways are webhooks)."""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field

from ..redact import describe_url
from ..rules import Finding
from .base import Action, ActionContext


@dataclass
class Webhook(Action):
    """POSTs JSON: template "slack" ({"text": ...}) or "generic" (the finding and the run).
    `url_env` names an environment variable holding the URL (webhook URLs are secrets); headers
    may take values from environment variables with `header_env` ({header: VARIABLE})."""

    url: str | None = None
    url_env: str | None = None
    template: str = "generic"
    header_env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url and not self.url_env:
            raise ValueError("Webhook: give url= or url_env=")
        if self.template not in ("slack", "generic"):
            raise ValueError(f"Webhook: template must be slack or generic, not {self.template!r}")
        if self.url and not self.url.lower().startswith(("http://", "https://")):
            # The value is not echoed: webhook URLs carry their token.
            raise ValueError(f"Webhook: url must start with http:// or https:// (got {describe_url(self.url)}/...)")

    def _url(self) -> str:
        url = self.url or os.environ.get(str(self.url_env), "")
        if not url.lower().startswith(("http://", "https://")):
            where = f"${self.url_env}" if not self.url else "url"
            raise ValueError(f"Webhook: {where} must hold an http:// or https:// URL (got {describe_url(url)}/...)")
        return url

    def describe(self) -> str:
        where = describe_url(self.url) if self.url else f"${self.url_env}"
        return f"Webhook {self.template} to {where}"  # never the path or query: they carry tokens

    def body(self, finding: Finding, context: ActionContext) -> dict[str, object]:
        if self.template == "slack":
            return {"text": f":rotating_light: *{finding.severity.name}* `{finding.code}` {finding.rule} at step "
                            f"{finding.step} ({finding.mode}): {finding.message}"}
        return {"run": str(context.run_dir or ""), **finding.to_event()}

    def run(self, finding: Finding, context: ActionContext) -> None:
        data = json.dumps(self.body(finding, context)).encode()
        headers = {"Content-Type": "application/json", **{k: os.environ[v] for k, v in self.header_env.items()}}
        request = urllib.request.Request(self._url(), data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            if response.status >= 300:
                raise RuntimeError(f"webhook answered HTTP {response.status}")
