"""Zero-code mode (`gradprobe run`) on scripts a user would bring: it says what it attached to or
why it attached to nothing, checks its arguments before the script starts, passes interpreter
options through, and leaves the script's exit code and messages unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradprobe import open_run
from gradprobe.python_command import CommandError, parse_python_command

TRAIN = """
import sys, torch
print("STARTED", int(sys.stdout.write_through), flush=True)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    loss = model(torch.randn(6, 4)).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
"""

HAND_WRITTEN_SGD = """
import torch
model = torch.nn.Linear(4, 1)
for _ in range(3):
    loss = model(torch.randn(6, 4)).pow(2).mean()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
            p.grad = None
print("DONE")
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # wide enough that tables do not cut names
    return subprocess.run([sys.executable, "-m", "gradprobe.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def script(tmp_path: Path, text: str, name: str = "train.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_says_what_it_attached_to_in_the_terminal_and_meta(tmp_path):
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, TRAIN))
    assert done.returncode == 0, done.stderr
    assert "attached to model Sequential (49 parameters) and optimizer SGD" in done.stderr
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["attached"]["model"] == {"type": "Sequential", "module": "torch.nn.modules.container",
                                         "tensors": 4, "parameters": 49}
    (optimizer,) = meta["attached"]["optimizers"]
    assert optimizer["type"] == "SGD" and optimizer["parameters"] == 49
    assert [group["lr"] for group in optimizer["param_groups"]] == [0.1]
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["optimizers"][0]["type"] == "SGD"
    assert "recorded 3 optimizer steps and 0 evaluations" in done.stderr


def test_attaching_to_nothing_is_said_loudly_and_recorded(tmp_path):
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, HAND_WRITTEN_SGD))
    assert done.returncode == 0 and "DONE" in done.stdout  # the script itself is undisturbed
    assert "ATTACHED TO NOTHING" in done.stderr
    assert "no torch.optim optimizer ever stepped" in done.stderr and "Linear (5 parameters)" in done.stderr
    assert "gradprobe.Probe(model, optimizer" in done.stderr  # how to attach by hand
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "not_attached" and "hand-written" in meta["not_attached_reason"]


def test_an_existing_run_directory_is_refused_before_the_script_starts(tmp_path):
    train = script(tmp_path, TRAIN)
    assert run_cli("run", "--out", str(tmp_path / "run"), "--", "python", train).returncode == 0
    again = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", train)
    assert again.returncode != 0
    assert "STARTED" not in again.stdout
    assert "--exist append" in again.stderr and "Traceback" not in again.stderr
    appended = run_cli("run", "--out", str(tmp_path / "run"), "--exist", "append", "--", "python", train)
    assert appended.returncode == 0, appended.stderr


def test_a_bad_config_is_refused_before_the_script_starts(tmp_path):
    done = run_cli("run", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "missing.yaml"), "--",
                   "python", script(tmp_path, TRAIN))
    assert done.returncode != 0 and "STARTED" not in done.stdout
    assert "--config" in done.stderr and "Traceback" not in done.stderr


def test_interpreter_options_reach_the_interpreter_not_the_script(tmp_path):
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", "-u", "-X", "utf8",
                   script(tmp_path, TRAIN + "print('UTF8', sys.flags.utf8_mode, sys.argv[1:])\n"), "-u", "x")
    assert done.returncode == 0, done.stderr
    assert "STARTED 1" in done.stdout  # -u took effect
    assert "UTF8 1 ['-u', 'x']" in done.stdout  # -X utf8 too; options after the script are the script's


@pytest.mark.parametrize("ending, code, message", [
    ("sys.exit('the data set is missing')", 1, "the data set is missing"),
    ("sys.exit(3)", 3, None),
    ("sys.exit(0)", 0, None),
])
def test_exit_codes_and_messages_pass_through(tmp_path, ending, code, message):
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, TRAIN + ending + "\n"))
    assert done.returncode == code, done.stderr
    if message:
        assert message in done.stderr
    run = open_run(tmp_path / "run")
    assert run.meta["status"] == ("completed" if code == 0 else "failed")
    assert len(run.steps()) == 3


def test_command_parsing():
    command = parse_python_command(["--", "python3", "-u", "-W", "ignore", "-Xdev", "-m", "pkg.train", "--lr", "1"])
    assert command.interpreter_options == ("-u", "-W", "ignore", "-Xdev")
    assert command.program == ["-m", "pkg.train", "--lr", "1"] and command.name == "train"
    with pytest.raises(CommandError, match="site"):
        parse_python_command(["python", "-S", "-m", "x"])
    with pytest.raises(CommandError, match="-c runs a string"):
        parse_python_command(["python", "-c", "print(1)"])
    with pytest.raises(CommandError, match="no such script"):
        parse_python_command(["python", "does_not_exist.py"])
    with pytest.raises(CommandError, match="give the command"):
        parse_python_command(["--"])


def test_show_does_not_interpret_names_as_markup(tmp_path):
    train = """
import torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleDict({"[/x]": torch.nn.Linear(3, 3), "[bold]b": torch.nn.Linear(3, 1)})
    def forward(self, x):
        return self.blocks["[bold]b"](self.blocks["[/x]"](x))
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(2):
    loss = model(torch.randn(4, 3)).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
"""
    assert run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, train)).returncode == 0
    done = run_cli("show", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert "blocks.[/x].weight" in done.stdout and "blocks.[bold]b.weight" in done.stdout


def test_cli_errors_are_one_line_not_tracebacks(tmp_path):
    done = run_cli("show", str(tmp_path / "nothing-here"))
    assert done.returncode == 2
    assert "gradprobe show: error:" in done.stderr and "Traceback" not in done.stderr


EVALUATING = """
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
criterion = torch.nn.CrossEntropyLoss()
x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
val = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
for step in range(10):
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 5 == 4:
        model.eval()
        with torch.no_grad():
            losses = [criterion(model(vx), vy) for vx, vy in val]
        print("VAL", float(sum(losses) / len(losses)))
# training with the model in eval() mode (frozen dropout/batch norm) is still training
model.eval()
for step in range(2):
    loss = model(x).logsumexp(1).mean()
    opt.zero_grad(); loss.backward(); opt.step()
"""


def test_evaluations_of_an_unmodified_script_are_recorded_as_eval_steps(tmp_path):
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, EVALUATING))
    assert done.returncode == 0, done.stderr
    printed = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("VAL")]
    run = open_run(tmp_path / "run")
    scalars = run.scalars(["loss"])
    evals = scalars[scalars["mode"] == "eval"].value.to_numpy()
    trains = scalars[scalars["mode"] == "train"]
    assert len(evals) == 2 and evals == pytest.approx(printed, rel=1e-5)
    assert len(trains) == 12 and list(run.steps()) == list(range(12))
    assert "recorded 12 optimizer steps and 2 evaluations" in done.stderr
    # activations of training steps come from training forwards only: batch 32, never the eval batch of 8
    activations = run.stats("activation")
    if len(activations):
        train_acts = activations[activations["mode"] == "train"]
        assert (train_acts.numel % 32 == 0).all()


# An LBFGS optimizer over `model` and the closure it steps with (a script fragment).
LBFGS_CLOSURE = """
lbfgs = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
x, y = torch.randn(16, 4), torch.randn(16, 1)
def closure():
    lbfgs.zero_grad()
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    return loss
"""


ACCUMULATING = """
import torch
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for step in range(3):
    logged = 0.0
    for micro in range(4):
        loss = model(torch.randn(8, 4)).pow(2).mean() / 4
        loss.backward()
        logged += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    print("LOGGED", logged)
""" + LBFGS_CLOSURE + """
print("LBFGS", float(lbfgs.step(closure)))
"""


def test_recorded_losses_mean_what_the_script_means(tmp_path):
    """Accumulated micro-batches add up to the loss the script logs; a closure step records the
    loss it starts from (what LBFGS.step returns), not its last evaluation."""
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, ACCUMULATING))
    assert done.returncode == 0, done.stderr
    logged = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("LOGGED")]
    losses = open_run(tmp_path / "run").scalars(["loss"], mode="train").value.to_numpy()
    assert losses == pytest.approx(logged, rel=1e-5)
    assert "attached to model Linear" in done.stderr and "optimizer SGD" in done.stderr
    assert "other optimizers stepped but were not attached: LBFGS" in done.stderr


def test_a_closure_step_records_the_loss_it_starts_from(tmp_path):
    lbfgs_only = """
import torch
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
""" + LBFGS_CLOSURE + """
for _ in range(3):
    print("LBFGS", float(lbfgs.step(closure)))
"""
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, lbfgs_only))
    assert done.returncode == 0, done.stderr
    returned = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("LBFGS")]
    losses = open_run(tmp_path / "run").scalars(["loss"], mode="train").value.to_numpy()
    assert losses == pytest.approx(returned, rel=1e-6)


def test_step_0_gradients_are_taken_before_clipping_like_every_other_step(tmp_path):
    clipping = """
import torch
from torch.nn.utils import clip_grad_norm_
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(3):
    loss = model(torch.randn(16, 4)).mul(100).pow(2).mean()
    opt.zero_grad(); loss.backward()
    print("NORM", float(clip_grad_norm_(model.parameters(), max_norm=1e-3)))  # the norm before clipping
    opt.step()
"""
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, clipping))
    assert done.returncode == 0, done.stderr
    norms = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("NORM")]
    grads = open_run(tmp_path / "run").stats("grad")
    recorded = grads.groupby("step").l2.apply(lambda l2: float((l2 ** 2).sum() ** 0.5)).to_numpy()
    assert recorded == pytest.approx(norms, rel=1e-5)  # all three steps, step 0 included, unclipped


@pytest.mark.parametrize("clip", [
    "clip_grad_norm_(model.parameters(), max_norm=1e-3)",
    "clip_grad_value_(model.parameters(), clip_value=1e-4)",
    "clip_grads_with_norm_(list(model.parameters()), 1e-3, get_total_norm([p.grad for p in model.parameters()]))",
    "[p.grad.mul_(1e-3) for p in model.parameters()]",
], ids=["clip_grad_norm_", "clip_grad_value_", "get_total_norm+clip_grads_with_norm_", "hand-written"])
def test_unmodified_script_with_accumulation_records_preclip_gradients(tmp_path, clip):
    """Imported before gradprobe attaches (as `gradprobe run` always is), accumulation 2."""
    training = f"""
import torch
from torch.nn.utils import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(4):
    opt.zero_grad()
    for micro in range(2):
        (model(torch.randn(16, 4)).mul(100).pow(2).mean() / 2).backward()
    print("NORM", float(torch.linalg.vector_norm(torch.stack([p.grad.double().norm() for p in model.parameters()]))))
    with torch.no_grad():
        {clip}
    opt.step()
"""
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, training))
    assert done.returncode == 0, done.stderr
    assert "gradprobe: gradients changed" not in done.stderr and "no backward through" not in done.stderr
    norms = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("NORM")]
    grads = open_run(tmp_path / "run").stats("grad")
    recorded = grads.groupby("step").l2.apply(lambda l2: float((l2 ** 2).sum() ** 0.5)).to_numpy()
    assert recorded == pytest.approx(norms, rel=1e-6)


def test_a_script_that_saves_its_whole_model_exits_0_and_the_model_loads(tmp_path):
    saving = TRAIN + "torch.save(model, sys.argv[1])\nprint('SAVED')\n"
    done = run_cli("run", "--out", str(tmp_path / "run"), "--", "python", script(tmp_path, saving),
                   str(tmp_path / "model.pt"))
    assert done.returncode == 0, done.stderr
    assert "SAVED" in done.stdout
    import torch

    model = torch.load(tmp_path / "model.pt", weights_only=False)
    assert model(torch.zeros(2, 4)).shape == (2, 1)
    assert open_run(tmp_path / "run").meta["status"] == "completed"


WITH_ARGUMENTS = """
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3)
parser.parse_args()
""" + TRAIN


@pytest.mark.parametrize("why, program", [("--help", [WITH_ARGUMENTS, "--help"]),
                                          ("an ImportError", ["import no_such_module_gp\n" + TRAIN])],
                         ids=["help", "import-error"])
def test_an_empty_run_left_by_a_script_that_trained_nothing_is_reused(tmp_path, why, program):
    out = tmp_path / "run"
    text, *arguments = program
    first = run_cli("run", "--out", str(out), "--", "python", script(tmp_path, text, "first.py"), *arguments)
    assert "STARTED" not in first.stdout, why  # it ended before training
    assert "ATTACHED TO NOTHING" not in first.stderr  # nothing failed to attach: nothing was trained
    assert f"the script trained nothing (no module with parameters ran a forward, and no torch.optim optimizer " \
           f"stepped); {out} holds an empty run that the next `gradprobe run` reuses" in first.stderr
    assert json.loads((out / "meta.json").read_text())["status"] == "not_attached"
    again = run_cli("run", "--out", str(out), "--", "python", script(tmp_path, TRAIN))
    assert again.returncode == 0, again.stderr
    assert f"gradprobe: reusing {out}: it holds only an empty run, left by a script that trained nothing\n" in again.stderr
    run = open_run(out)
    assert run.meta["status"] == "completed" and len(run.steps()) == 3


def test_a_run_that_recorded_steps_is_not_reused_as_empty(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--out", str(out), "--", "python", script(tmp_path, TRAIN)).returncode == 0
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "status": "not_attached"}))  # its parts still hold 3 steps
    again = run_cli("run", "--out", str(out), "--", "python", script(tmp_path, TRAIN))
    assert again.returncode != 0 and "reusing" not in again.stderr
    assert f"{out} already holds a run" in again.stderr
    assert len(open_run(out).steps()) == 3
