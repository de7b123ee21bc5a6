"""Actions against real local servers (SMTP and HTTP on 127.0.0.1), failure isolation, stopping."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from gradprobe import Probe, open_run
from gradprobe.actions import Email, Log, StopTraining, Webhook
from gradprobe.rules import Finding, RuleEngine, resolve
from gradprobe.rules.nonfinite import NonFinite
from gradprobe.rules.weights import AllZero


def zero_model():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.nn.init.zeros_(model[0].weight)  # AllZero fires at step 0
    return model


def loop(model, probe, opt, steps=5):
    done = 0
    for _ in range(steps):
        loss = model(torch.randn(4, 8)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        probe.step(loss=loss)
        done += 1
        if probe.should_stop:
            break
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body), "auth": self.headers.get("Authorization")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


@pytest.fixture
def smtp_server():
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    messages = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            messages.append(envelope)
            return "250 OK"

    controller = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, messages
    controller.stop()


def wait_for(predicate, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def test_webhook_slack_and_generic_with_secret_headers(tmp_path, http_server, monkeypatch):
    url, received = http_server
    monkeypatch.setenv("GP_TEST_HOOK", f"{url}/services/T000/B000/SECRETTOKEN")
    monkeypatch.setenv("GP_TEST_AUTH", "Bearer topsecret")
    model = zero_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    actions = [Webhook(url_env="GP_TEST_HOOK", template="slack", cooldown_seconds=0),
               Webhook(url=f"{url}/generic", header_env={"Authorization": "GP_TEST_AUTH"}, cooldown_seconds=0)]
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[AllZero()], actions=actions) as probe:
        loop(model, probe, opt, 3)
    assert wait_for(lambda: len(received) == 2)
    slack = next(r for r in received if r["path"].endswith("SECRETTOKEN"))
    assert "GP111" in slack["body"]["text"] and "0.weight" in slack["body"]["text"]
    generic = next(r for r in received if r["path"] == "/generic")
    assert generic["body"]["code"] == "GP111" and generic["body"]["tensors"] == ["0.weight"]
    assert generic["auth"] == "Bearer topsecret"
    text = "".join(p.read_text(errors="ignore") for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert "SECRETTOKEN" not in text and "topsecret" not in text  # no secret in the run directory


def test_email_received_by_local_smtp_server(tmp_path, smtp_server):
    port, messages = smtp_server
    model = zero_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    email = Email(to=("oncall@example.com",), host="127.0.0.1", port=port, security="none", cooldown_seconds=0)
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[AllZero()], actions=[email]) as probe:
        loop(model, probe, opt, 2)
    assert wait_for(lambda: len(messages) == 1)
    content = messages[0].content.decode()
    assert "oncall@example.com" in messages[0].rcpt_tos and "GP111" in content and "all zeros" in content


def test_dead_servers_do_not_disturb_training_or_lose_findings(tmp_path):
    port = free_port()  # nothing listens there: connections are refused
    model = zero_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    actions = [Webhook(url=f"http://127.0.0.1:{port}/hook", cooldown_seconds=0, retries=2, timeout_seconds=1),
               Email(to=("a@b.c",), host="127.0.0.1", port=port, security="none", cooldown_seconds=0, retries=2)]
    started = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="failed after 2 attempts"):
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[AllZero()], actions=actions) as probe:
            steps = loop(model, probe, opt, 5)
    assert steps == 5
    run = open_run(tmp_path / "run")
    assert [f["code"] for f in run.events("finding")] == ["GP111"]
    failed = run.events("action_failed")
    assert len(failed) == 2 and all("Refused" in f["error"] or "refused" in f["error"] for f in failed)
    assert time.perf_counter() - started < 60


def test_stop_training_ends_a_plain_loop_on_the_step_of_the_finding(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = {"n": 0}
    original = model[0].forward

    def poisoned(x):
        calls["n"] += 1
        out = original(x)
        return out * float("nan") if calls["n"] >= 4 else out

    model[0].forward = poisoned
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[NonFinite()],
               actions=[StopTraining(), Log()]) as probe:
        done = 0
        for _ in range(50):
            model(torch.randn(4, 8)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
            probe.flush()  # rules run on the consumer thread; a real loop sees the stop a step or two later
            done += 1
            if probe.should_stop:
                break
    assert done == 4 and "GP100" in probe.stop_reason
    run = open_run(tmp_path / "run")
    assert run.meta["status"] == "stopped" and run.events("stop_requested")[0]["steps_completed"] == 4


def test_check_reproduces_live_findings(tmp_path):
    torch.manual_seed(0)
    model = zero_model()
    opt = torch.optim.SGD(model.parameters(), lr=10.0)  # AllZero, then divergence
    with Probe(model, opt, out_dir=tmp_path / "run", config="full", rules="all") as probe:
        loop(model, probe, opt, 30)
    run = open_run(tmp_path / "run")
    live = [(f.code, f.step, f.mode, f.tensors) for f in map(Finding.from_event, run.events("finding"))]
    offline = [(f.code, f.step, f.mode, f.tensors) for f in RuleEngine(resolve("all")).replay(run.records())]
    assert live and live == offline


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_credentials_from_the_environment(tmp_path, certificate, security, monkeypatch):
    import ssl

    controller_module = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.smtp import AuthResult

    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    messages, logins = [], []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            messages.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == b"s3cret-pass")

    port = free_port()
    if security == "ssl":
        controller = controller_module.Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=server_context,
                                                  authenticator=authenticator, auth_require_tls=False)
    else:
        controller = controller_module.Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator,
                                                  tls_context=server_context, require_starttls=True)
    controller.start()
    monkeypatch.setenv("GP_SMTP_USER", "gradprobe")
    monkeypatch.setenv("GP_SMTP_PASS", "s3cret-pass")
    try:
        model = zero_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        email = Email(to=("oncall@example.com",), host="127.0.0.1", port=port, security=security, ca_file=str(cert),
                      username_env="GP_SMTP_USER", password_env="GP_SMTP_PASS", cooldown_seconds=0)
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[AllZero()], actions=[email]) as probe:
            loop(model, probe, opt, 2)
        assert wait_for(lambda: len(messages) == 1)
    finally:
        controller.stop()
    assert logins == [("gradprobe", "s3cret-pass")]
    text = "".join(p.read_text(errors="ignore") for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert "s3cret-pass" not in text
