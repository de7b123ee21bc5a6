"""No secret of an action's configuration reaches the run directory, a warning or an error text:
URLs with and without a scheme, credentials in user-info and query strings, token-like values."""

from __future__ import annotations

import warnings

import pytest
import torch

from gradprobe import Probe
from gradprobe.actions import Webhook
from gradprobe.redact import REDACTED, describe_url, redact
from gradprobe.rules.weights import AllZero

SECRETS = ("T000", "B000", "XXXXSECRET", "pa55word", "qs-secret", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@pytest.mark.parametrize("text, kept", [
    ("unknown url type: hooks.slack.com/services/T000/B000/XXXXSECRET", "hooks.slack.com"),
    ("HTTP Error 404 for https://hooks.slack.com/services/T000/B000/XXXXSECRET?x=1", "https://hooks.slack.com"),
    ("<urlopen error https://bot:pa55word@chat.example.com:8443/hook>", "https://chat.example.com:8443"),
    ("POST http://sms.example.com/send?to=1&token=qs-secret refused", "http://sms.example.com"),
    ("smtp login failed: password=pa55word", "smtp login failed"),
    ("key ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 rejected", "rejected"),
])
def test_redact_keeps_the_server_and_drops_the_secret(text, kept):
    cleaned = redact(text)
    assert kept in cleaned and REDACTED in cleaned
    assert not any(secret in cleaned for secret in SECRETS)


def test_redact_leaves_layer_names_and_plain_addresses_alone():
    text = "gradient of encoder.layer.0.attention.self.query.weight; Connection refused 127.0.0.1:9"
    assert redact(text) == text


def test_describe_url_never_shows_path_query_or_user_info():
    assert describe_url("hooks.slack.com/services/T000/B000/XXXXSECRET") == "(no scheme)://hooks.slack.com"
    assert describe_url("https://bot:pa55word@chat.example.com:8443/h?token=qs-secret") == \
        "https://chat.example.com:8443"


def test_a_scheme_less_webhook_url_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match="http:// or https://") as raised:
        Webhook(url="hooks.slack.com/services/T000/B000/XXXXSECRET")
    assert not any(secret in str(raised.value) for secret in SECRETS)


def test_a_scheme_less_url_from_the_environment_fails_the_action_not_the_run_and_leaks_nothing(
        tmp_path, monkeypatch):
    monkeypatch.setenv("GP_TEST_HOOK", "hooks.slack.com/services/T000/B000/XXXXSECRET")
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.nn.init.zeros_(model[0].weight)  # AllZero fires at step 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hook = Webhook(url_env="GP_TEST_HOOK", cooldown_seconds=0, retries=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[AllZero()], actions=[hook]) as probe:
            for _ in range(2):
                model(torch.randn(4, 8)).pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
                probe.step()
    messages = " ".join(str(w.message) for w in caught)
    assert "Webhook" in messages and "failed" in messages
    written = "".join(p.read_text(errors="ignore") for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert "action_failed" in written
    assert not any(secret in written + messages for secret in SECRETS)
