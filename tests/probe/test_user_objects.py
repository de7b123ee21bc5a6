"""The user's objects stay the user's while a probe watches them: a model (and its optimizer) still
saves, pickles, deep-copies, exports, moves and round-trips its state dict, during and after a run,
with every preset and the NaN/Inf origin on; a saved model loads where gradprobe is not installed;
a deep copy is not watched, and the original still is."""

from __future__ import annotations

import copy
import io
import pickle
import pickletools
import subprocess
import sys

import pytest
import torch

from gradprobe import Probe, open_run
from gradprobe.user_hooks import is_inert_copy

from .helpers import TinyMLP, batch

PRESETS = ["minimal", "default", "full"]


def train(model, opt, probe, steps: int, first: int = 0) -> None:
    for step in range(first, first + steps):
        x, y = batch(step)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        if probe is not None:
            probe.step()


def hooks_of(obj) -> list:
    if isinstance(obj, torch.nn.Module):
        return [h for m in obj.modules() for d in (m._forward_hooks, m._forward_pre_hooks) for h in d.values()]
    return [*obj._optimizer_step_pre_hooks.values(), *obj._optimizer_step_post_hooks.values()]


def globals_in(data: bytes) -> set[str]:
    """The module names a pickle refers to (what loading it imports)."""
    found = set()
    strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "STACK_GLOBAL":
            found.add(strings[-2].split(".")[0])
        elif opcode.name == "GLOBAL":
            found.add(arg.split()[0].split(".")[0])
    return found


def assert_copies_are_clean(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    for obj in (model, opt):
        data = pickle.dumps(obj)
        assert "gradprobe" not in globals_in(data)
        for clone in (pickle.loads(data), copy.deepcopy(obj)):
            assert all(is_inert_copy(h) for h in hooks_of(clone))  # no live gradprobe hook comes along
    buffer = io.BytesIO()
    torch.save(model, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    x = batch(99)[0]
    torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("preset", PRESETS)
def test_model_and_optimizer_save_pickle_and_copy_during_and_after_a_run(tmp_path, preset):
    model = TinyMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    probe = Probe(model, opt, out_dir=tmp_path / "run", config={"preset": preset, "nonfinite_origin": True},
                  rules=[])
    train(model, opt, probe, 3)
    assert hooks_of(model)  # the probe is watching
    assert_copies_are_clean(model, opt)
    # In the middle of a step: after the forward and backward, before the optimizer step.
    x, y = batch(50)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert_copies_are_clean(model, opt)
    opt.step()
    opt.zero_grad()
    probe.step()
    probe.close()
    assert not [h for h in hooks_of(model) + hooks_of(opt) if not is_inert_copy(h)]
    assert_copies_are_clean(model, opt)


def test_a_deep_copy_is_not_watched_and_the_original_still_is(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run", config="full", rules=[]) as probe:
        train(model, opt, probe, 2)
        ema = copy.deepcopy(model)  # "keep an EMA / the best model so far"
        ema_opt = torch.optim.SGD(ema.parameters(), lr=0.1)
        train(ema, ema_opt, None, 5, first=100)  # trains, and nothing of it is recorded
        probe.flush()
        rows_before = len(open_run(tmp_path / "run").stats("grad"))
        train(model, opt, probe, 2, first=2)
        assert probe.current_step() == 4
    grads = open_run(tmp_path / "run").stats("grad")
    assert sorted(grads.step.unique()) == [0, 1, 2, 3]
    assert len(grads) == 2 * rows_before
    assert not any(p.data_ptr() == q.data_ptr() for p, q in zip(model.parameters(), ema.parameters()))


def test_a_saved_model_loads_where_gradprobe_is_not_installed(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run", config="full", rules=[]) as probe:
        train(model, opt, probe, 2)
        torch.save(model, tmp_path / "model.pt")
    code = ("import sys; sys.modules['gradprobe'] = None\n"  # import gradprobe now fails
            "import torch; sys.path.insert(0, sys.argv[1])\n"
            "model = torch.load(sys.argv[2], weights_only=False)\n"
            "print(model(torch.zeros(2, 12)).shape)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path.parent.parent), str(tmp_path / "model.pt")],
                          capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert done.returncode == 0, done.stderr
    assert "torch.Size([2, 3])" in done.stdout


def test_state_dict_round_trip_export_and_move_with_a_probe_attached(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run", config="full", rules=[]) as probe:
        train(model, opt, probe, 2)
        state = copy.deepcopy(model.state_dict())
        assert set(state) == {n for n, _ in model.named_parameters()}
        other = TinyMLP(hidden=32)
        other.load_state_dict(state)
        model.load_state_dict(state)
        x = batch(7)[0]
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), model(x))
        train(model, opt, probe, 1, first=2)
        model.to(torch.float64)  # a move the probe follows (its tables are rebuilt)
        x, y = batch(3)
        torch.nn.functional.cross_entropy(model(x.double()), y).backward()
        opt.step()
        opt.zero_grad()
        probe.step()
    grads = open_run(tmp_path / "run").stats("grad")
    assert sorted(grads.step.unique()) == [0, 1, 2, 3]
    assert grads[grads.step == 3].present.all()
    assert not open_run(tmp_path / "run").events("error")
