"""E-mail through SMTP (plain, STARTTLS or SSL); credentials from environment variables only."""

from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from ..rules import Finding
from .base import Action, ActionContext


@dataclass
class Email(Action):
    """Sends one e-mail per finding. `username_env` / `password_env` name environment variables;
    the secrets themselves are never stored or logged."""

    to: tuple[str, ...] = ()
    sender: str = "gradprobe@localhost"
    host: str = "localhost"
    port: int = 25
    security: str = "starttls"  # "starttls", "ssl" or "none"
    username_env: str | None = None
    password_env: str | None = None
    ca_file: str | None = None  # CA bundle for the server's certificate (a private mail server); None: system CAs

    def __post_init__(self) -> None:
        if isinstance(self.to, str):
            self.to = (self.to,)
        if not self.to:
            raise ValueError("Email: give at least one recipient (to=...)")
        if self.security not in ("starttls", "ssl", "none"):
            raise ValueError(f"Email: security must be starttls, ssl or none, not {self.security!r}")

    def describe(self) -> str:
        return f"Email to {', '.join(self.to)} via {self.host}:{self.port}"

    def run(self, finding: Finding, context: ActionContext) -> None:
        message = EmailMessage()
        message["Subject"] = f"[gradprobe] {finding.severity.name} {finding.code} {finding.rule} at step {finding.step}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(f"{finding.message}\n\nrun: {context.run_dir or ''}\n"
                            f"step: {finding.step} ({finding.mode})\n"
                            f"tensors: {', '.join(finding.tensors) or '-'}\nevidence: {dict(finding.evidence)}\n")
        tls = ssl.create_default_context(cafile=self.ca_file)
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_seconds, context=tls)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=tls)
            if self.username_env:
                smtp.login(os.environ[self.username_env], os.environ.get(self.password_env or "", ""))
            smtp.send_message(message)
