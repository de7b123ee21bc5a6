"""smdebug 1.0.34 on the same fine-tuning step, saving the same reductions every step. Runs in the
smdebug virtual environment (bench/smdebug/setup.sh); prints one JSON line with the timings.

smdebug's hook cannot be removed once registered, so this measures blocks without the hook first,
then blocks with it (gradprobe's benchmark alternates)."""

import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import finetune  # noqa: E402

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 11
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2

model, optimizer, data = finetune.setup()
without = []
for _ in range(ROUNDS):
    without += finetune.time_block(model, optimizer, data, STEPS)

import smdebug.pytorch as smd  # noqa: E402
from smdebug.core.reduction_config import ReductionConfig  # noqa: E402

out = tempfile.mkdtemp(prefix="smdebug-")
reductions = ReductionConfig(reductions=["min", "max", "mean", "std"], abs_reductions=["min", "max"], norms=["l1", "l2"])
hook = smd.Hook(out_dir=out, save_config=smd.SaveConfig(save_interval=1), reduction_config=reductions,
                include_collections=["weights", "biases", "gradients", "losses"])
hook.register_module(model)
loss_fn = torch_loss = __import__("torch").nn.CrossEntropyLoss()
hook.register_loss(loss_fn)
with_hook = []
for _ in range(ROUNDS):
    with_hook += finetune.time_block(model, optimizer, data, STEPS, loss_fn=loss_fn)
result = finetune.summary(without, with_hook)
result["bytes_written"] = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
result["steps_recorded"] = ROUNDS * STEPS
print(json.dumps(result))
