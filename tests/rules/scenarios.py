"""The scenario matrix: tiny, fast trainings (seconds each, CPU) with planted pathologies, and healthy
runs that must fire nothing under gradprobe.rules.default().

Each Scenario runs one training under a Probe and returns its findings. An Expectation says which
rule must name which module or tensor, and how many steps after the planted onset it may take.
tests/rules/test_scenarios.py asserts them; scripts/detection_matrix.py writes docs/detection.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from gradprobe import Probe
from gradprobe.rules import Finding, Rule, Severity, default
from gradprobe.rules.classification import ClassImbalance
from gradprobe.rules.gradients import LowPrecisionRange

# -- models and their tasks -----------------------------------------------------------------------


@dataclass
class Kit:
    """A model, how to call it, its task's batches and its loss."""

    model: torch.nn.Module
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # step -> (inputs, targets)
    validation: tuple[torch.Tensor, torch.Tensor]
    forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] = lambda m, x: m(x)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    classes: int = 4


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(activation: type[torch.nn.Module] = torch.nn.ReLU, depth: int = 2, width: int = 64, seed: int = 0,
        labels: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Kit:
    """`labels` maps the task's labels to others (e.g. imbalanced ones).

    An MLP on 16 features; 4 classes from a fixed random linear teacher."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    size = 16
    for _ in range(depth):
        layers += [torch.nn.Linear(size, width), activation()]
        size = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(size, 4))
    teacher = torch.randn(16, 4, generator=_generator(99))

    def batch(step: int, n: int = 32):
        x = torch.randn(n, 16, generator=_generator(1000 + step))
        y = (x @ teacher).argmax(1)
        return x, (labels(y) if labels else y)

    return Kit(model, batch, batch(-1, 256))


def cnn(activation: type[torch.nn.Module] = torch.nn.ReLU, depth: int = 2, seed: int = 0,
        labels: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Kit:
    """A small CNN on 1x12x12 images; 4 classes: which quadrant holds a bright patch."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    channels = 1
    for i in range(depth):
        layers += [torch.nn.Conv2d(channels, 8, 3, padding=1, stride=2 if i == 0 else 1), activation()]
        channels = 8
    model = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, 4))

    def batch(step: int, n: int = 32):
        g = _generator(2000 + step)
        y = torch.randint(0, 4, (n,), generator=g)
        x = 0.5 * torch.randn(n, 1, 12, 12, generator=g)
        for i, c in enumerate(y.tolist()):
            r, q = divmod(c, 2)
            x[i, 0, 6 * r:6 * r + 6, 6 * q:6 * q + 6] += 1.0
        return x, (labels(y) if labels else y)

    return Kit(model, batch, batch(-1, 256))


def bert(seed: int = 0) -> Kit:
    """A 2-layer BERT (tiny sizes) classifying whether most tokens are from the lower half of the vocabulary."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    model = BertForSequenceClassification(config)

    def batch(step: int, n: int = 16):
        g = _generator(3000 + step)
        low = torch.rand(n, 1, generator=g) < 0.5
        p = torch.where(low, 0.75, 0.25).expand(n, 16)
        from_low = torch.rand(n, 16, generator=g) < p
        tokens = torch.where(from_low, torch.randint(2, 33, (n, 16), generator=g),
                             torch.randint(33, 64, (n, 16), generator=g))
        return tokens, low[:, 0].long()

    return Kit(model, batch, batch(-1, 128), forward=lambda m, x: m(input_ids=x).logits, classes=2)


def bert_pretraining(seed: int = 0) -> Kit:
    """A 2-layer BERT (tiny sizes) pretrained with MLM + NSP on segments that repeat one token: a masked
    token is any unmasked one of its segment; the second segment repeats the first one's token or not."""
    from transformers import BertConfig, BertForPreTraining
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    cls, sep, mask, first_token, vocab = 1, 2, 3, 4, 36
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    model = BertForPreTraining(config)

    def batch(step: int, n: int = 16):
        g = _generator(6000 + step)
        pattern = torch.randint(first_token, vocab, (n, 1), generator=g).repeat(1, 4)
        other = torch.randint(first_token, vocab, (n, 1), generator=g).repeat(1, 4)
        random_next = torch.rand(n, generator=g) < 0.5
        second = torch.where(random_next[:, None], other, pattern).repeat(1, 2)
        tokens = torch.cat([torch.full((n, 1), cls), pattern.repeat(1, 2), torch.full((n, 1), sep), second,
                            torch.full((n, 1), sep)], dim=1)
        segments = torch.cat([torch.zeros(n, 10, dtype=torch.long), torch.ones(n, 9, dtype=torch.long)], dim=1)
        masked = (torch.rand(tokens.shape, generator=g) < 0.15) & (tokens >= first_token)
        labels = torch.where(masked, tokens, torch.full_like(tokens, -100))
        return (torch.where(masked, torch.full_like(tokens, mask), tokens), segments), (labels, random_next.long())

    def forward(m: torch.nn.Module, inputs):
        out = m(input_ids=inputs[0], token_type_ids=inputs[1])
        return out.prediction_logits, out.seq_relationship_logits

    def loss(outputs, targets):
        (words, next_sentence), (labels, is_random) = outputs, targets
        return F.cross_entropy(words.reshape(-1, vocab), labels.reshape(-1)) + F.cross_entropy(next_sentence, is_random)

    return Kit(model, batch, batch(-1, 64), forward=forward, loss=loss, classes=vocab)


def _sequences(step: int, n: int, vocab: int = 32, length: int = 24, seed: int = 4000):
    """Sequences repeating a random 4-token pattern: the next token is predictable after the first period."""
    g = _generator(seed + step)
    pattern = torch.randint(0, vocab, (n, 4), generator=g)
    tokens = pattern.repeat(1, length // 4)
    return tokens, tokens


def _lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def gpt2(seed: int = 0) -> Kit:
    """A 2-layer GPT-2 (tiny sizes) with its standard init (residual projections at 0.02/sqrt(2 n_layer))."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=32, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    return Kit(model, lambda step: _sequences(step, 16), _sequences(-1, 64), forward=lambda m, x: m(input_ids=x).logits,
               loss=_lm_loss, classes=32)


class LSTMLanguageModel(torch.nn.Module):
    def __init__(self, vocab: int = 32, width: int = 64) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, 32)
        self.lstm = torch.nn.LSTM(32, width, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embedding(tokens))[0])


def lstm(seed: int = 0) -> Kit:
    torch.manual_seed(seed)
    return Kit(LSTMLanguageModel(), lambda step: _sequences(step, 16, seed=5000), _sequences(-1, 64, seed=5000),
               loss=_lm_loss, classes=32)


# -- the training loop ----------------------------------------------------------------------------


@dataclass
class Plan:
    """How one scenario trains its kit."""

    steps: int = 60
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr_from: tuple[int, float] | None = None  # (step, lr): the learning rate changes at that step
    clip: float | None = None
    eval_every: int = 0
    train_batches: int = 0  # > 0: cycle over this many batches (a tiny training set)
    predictions: bool = False
    loss_factor: float = 1.0  # the backward runs on loss x this (a too small loss scale)
    detached_optimizer: bool = False  # the optimizer holds other parameters than the model's
    extra_rules: tuple[Callable[[], Rule], ...] = ()  # made fresh for each run
    config: str = "default"


@dataclass
class Outcome:
    findings: list[Finding]
    train_losses: list[float] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)


def train(kit: Kit, plan: Plan, out_dir: Path) -> Outcome:
    model = kit.model
    params = [torch.nn.Parameter(torch.zeros(3))] if plan.detached_optimizer else list(model.parameters())
    make = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[plan.optimizer]
    optimizer = make(params, lr=plan.lr)
    outcome = Outcome([])
    with Probe(model, optimizer, out_dir=out_dir, config=plan.config, rules=default() + [make_rule() for make_rule in plan.extra_rules]) as probe:
        for step in range(plan.steps):
            if plan.lr_from is not None and step == plan.lr_from[0]:
                for group in optimizer.param_groups:
                    group["lr"] = plan.lr_from[1]
            x, y = kit.batch(step % plan.train_batches if plan.train_batches else step)
            for module in model.modules():  # planted faults that break at a given step (tick(step))
                if hasattr(module, "tick"):
                    module.tick(step)
            model.train()
            output = kit.forward(model, x)
            loss = kit.loss(output, y)
            (loss * plan.loss_factor).backward()
            if plan.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), plan.clip)
            optimizer.step()
            optimizer.zero_grad()
            if plan.predictions:
                probe.observe_predictions(y, output.argmax(-1))
            probe.step(loss=loss)
            outcome.train_losses.append(float(loss.detach()))
            if plan.eval_every and (step + 1) % plan.eval_every == 0:
                probe.set_mode("eval")
                model.eval()
                with torch.no_grad():
                    vx, vy = kit.validation
                    output = kit.forward(model, vx)
                    vloss = kit.loss(output, vy)
                    classified = isinstance(output, torch.Tensor) and output.dim() == 2
                    accuracy = float((output.argmax(-1) == vy).float().mean()) if classified else None
                probe.step(loss=vloss, metrics={"accuracy": accuracy} if accuracy is not None else None)
                probe.set_mode("train")
                outcome.eval_losses.append(float(vloss))
        probe.flush()
        outcome.findings = list(probe.findings)
    return outcome


# -- planted pathologies -------------------------------------------------------------------------


def _deep_sigmoid(kind: str) -> Kit:
    kit = mlp(torch.nn.Sigmoid, depth=10, width=16) if kind == "mlp" else cnn(torch.nn.Sigmoid, depth=8)
    for module in kit.model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.normal_(module.weight, std=0.05)
    return kit


def _saturated_tanh(kind: str) -> Kit:
    kit = mlp(torch.nn.Tanh) if kind == "mlp" else cnn(torch.nn.Tanh)
    first = kit.model[0]
    torch.nn.init.normal_(first.weight, std=5.0)
    return kit


def _dead_relu(kind: str) -> Kit:
    kit = mlp() if kind == "mlp" else cnn()
    torch.nn.init.constant_(kit.model[0].bias, -50.0)
    return kit


def _init(kind: str, value: float) -> Kit:
    kit = mlp() if kind == "mlp" else cnn()
    torch.nn.init.constant_(kit.model[0].weight, value)
    return kit


def _imbalanced(kind: str) -> Kit:
    """95% of the labels are class 0."""
    def labels(y: torch.Tensor) -> torch.Tensor:
        keep = torch.rand(len(y), generator=_generator(int(y.sum()) + len(y))) < 0.05
        return torch.where(keep, y, torch.zeros_like(y))

    return mlp(labels=labels) if kind == "mlp" else cnn(labels=labels)


def _memoriser(kind: str) -> Kit:
    """A wide model, noise labels: it can only memorise its tiny training set."""
    g = _generator(7)
    if kind == "mlp":
        kit = mlp(width=256)
        validation = (torch.randn(256, 16, generator=g), torch.randint(0, 4, (256,), generator=g))
        tiny = (torch.randn(16, 16, generator=g), torch.randint(0, 4, (16,), generator=g))
    else:
        kit = cnn(depth=3)
        validation = (torch.randn(256, 1, 12, 12, generator=g), torch.randint(0, 4, (256,), generator=g))
        tiny = (torch.randn(16, 1, 12, 12, generator=g), torch.randint(0, 4, (16,), generator=g))
    kit.batch, kit.validation = (lambda step: tiny), validation
    return kit


class PoisonedForward(torch.nn.Module):
    """Wraps a block; its forward output turns to NaN on one training step (as a bad batch would: a
    function of the step the loop is on, so a replay of that step breaks the same way)."""

    def __init__(self, inner: torch.nn.Module, at_call: int) -> None:
        super().__init__()
        self.inner, self.at_call, self.armed = inner, at_call, False

    def tick(self, step: int) -> None:
        self.armed = step == self.at_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out * float("nan") if self.armed else out


class SqrtAtZero(torch.nn.Module):
    """sqrt(|x| + 1e-6): finite forward; from one step on its input is zeroed (x * 0), so sqrt sees exact
    zeros, where its derivative is infinite: the backward produces Inf (then NaN) here."""

    def __init__(self, from_call: int) -> None:
        super().__init__()
        self.from_call, self.armed = from_call, False

    def tick(self, step: int) -> None:
        self.armed = step >= self.from_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            return torch.sqrt(x * 0.0)  # exact zeros: d sqrt(x)/dx = Inf there
        return torch.sqrt(x.abs() + 1e-6)


def _insert(kit: Kit, index: int, module: torch.nn.Module) -> Kit:
    layers = list(kit.model)
    layers.insert(index, module)
    kit.model = torch.nn.Sequential(*layers)
    return kit


# -- the matrix -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """`rule` names `where` (a tensor or module among the finding's tensors; None: not checked) within
    `delay` steps (of `mode`) after `onset`; `forbid` rules must not fire at warning or above."""

    rule: str
    where: str | None
    onset: int | str  # a step, or "best_eval": the evaluation with the lowest validation loss
    delay: int
    mode: str = "train"
    forbid: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    build: Callable[[], Kit]
    plan: Plan
    expect: Expectation | None  # None: healthy, nothing may fire
    needs_probe_fix: str | None = None  # why it is expected to fail until the probe-side fix lands
    slow: bool = False
    # Healthy runs: info findings that are the right call. A run that converges to ~0 loss gets
    # VanishingGradient's info "the loss is ~0: memorised or converged", never a warning.
    allowed_info: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.name}[{self.model}]"

    def run(self, out_dir: Path | None = None) -> Outcome:
        if out_dir is None:
            with tempfile.TemporaryDirectory(prefix="gradprobe-scenario-") as tmp:
                return train(self.build(), self.plan, Path(tmp) / "run")
        return train(self.build(), self.plan, out_dir)


def _both(name: str, build: Callable[[str], Kit], plan: Plan, expect: Expectation, models=("mlp", "cnn"),
          **extra) -> list[Scenario]:
    return [Scenario(name, kind, (lambda kind=kind: build(kind)), plan, expect, **extra) for kind in models]


def _kit(kind: str) -> Kit:
    return {"mlp": mlp, "cnn": cnn, "bert": bert, "gpt2": gpt2, "lstm": lstm}[kind]()


LR_JUMP = 20  # pathologies planted mid-run start at this step, after a healthy start

PATHOLOGIES: list[Scenario] = [
    *_both("vanishing (deep sigmoid)", _deep_sigmoid, Plan(steps=6, lr=0.1),
           Expectation("VanishingGradient", "0.weight", 0, 2)),
    *_both("exploding (1000x learning rate)", _kit, Plan(steps=LR_JUMP + 6, lr=0.05, lr_from=(LR_JUMP, 50.0)),
           Expectation("ExplodingGradient", None, LR_JUMP, 3)),
    *[Scenario("divergence with clipping on", kind, (lambda kind=kind: _kit(kind)),
               Plan(steps=LR_JUMP + 8, lr=lr, optimizer=opt, clip=1.0, lr_from=(LR_JUMP, 1000 * lr)),
               Expectation("Divergence", "loss", LR_JUMP, 3), slow=kind == "bert")
      for kind, lr, opt in (("mlp", 0.05, "sgd"), ("cnn", 0.05, "sgd"), ("bert", 1e-3, "adamw"))],
    *_both("dead ReLU", _dead_relu, Plan(steps=3), Expectation("DeadUnits", "1", 0, 0)),
    *_both("saturated tanh", _saturated_tanh, Plan(steps=3), Expectation("SaturatedActivation", "1", 0, 0)),
    *_both("poor init (zeros)", lambda kind: _init(kind, 0.0), Plan(steps=3), Expectation("AllZero", "0.weight", 0, 0)),
    *_both("poor init (constant)", lambda kind: _init(kind, 0.5), Plan(steps=3),
           Expectation("PoorWeightInitialization", "0.weight", 0, 0)),
    *_both("overfitting (evaluations every 5 steps)", _memoriser,
           Plan(steps=150, lr=1e-2, optimizer="adam", eval_every=5, train_batches=1),
           Expectation("Overfit", "loss", "best_eval", 5, mode="eval",
                       forbid=("VanishingGradient", "LossNotDecreasing"))),
    *_both("loss not decreasing (LR 0)", _kit, Plan(steps=70, lr=0.0),
           Expectation("LossNotDecreasing", "loss", 49, 15)),
    *_both("frozen model (optimizer holds other parameters)", _kit, Plan(steps=6, detached_optimizer=True),
           Expectation("UnchangedTensor", "0.weight", 0, 3)),
    *_both("class imbalance (95% one class)", _imbalanced,
           Plan(steps=6, predictions=True, extra_rules=(ClassImbalance,)),
           Expectation("ClassImbalance", None, 0, 3)),
    *_both("fp16 underflow (loss scale 2^-20, emulated in fp32)", _kit,
           Plan(steps=3, loss_factor=2.0 ** -20, extra_rules=(lambda: LowPrecisionRange(dtype="float16"),)),
           Expectation("LowPrecisionRange", None, 0, 0)),
    *_both("NaN in a block's forward, unscheduled step 7", lambda kind: _insert(_kit(kind), 2, PoisonedForward(
        torch.nn.Identity(), at_call=7)), Plan(steps=9), Expectation("NonFinite", "2", 7, 0),
           ),
    *_both("Inf from a backward (sqrt at 0), step 5", lambda kind: _insert(_kit(kind), 2, SqrtAtZero(from_call=5)),
           Plan(steps=7), Expectation("NonFinite", "2", 5, 0)),
]

HEALTHY: list[Scenario] = [
    Scenario("healthy", "mlp", mlp, Plan(steps=150, lr=0.05), None),
    Scenario("healthy", "cnn", cnn, Plan(steps=100, lr=0.05), None),
    Scenario("healthy fine-tuning, evaluations every 10 steps", "bert", bert,
             Plan(steps=150, lr=5e-4, optimizer="adamw", eval_every=10, clip=1.0), None),
    Scenario("healthy MLM+NSP pretraining, evaluations every 10 steps", "bert", bert_pretraining,
             Plan(steps=150, lr=1e-3, optimizer="adamw", eval_every=10, clip=1.0), None, slow=True),
    Scenario("healthy, standard init", "gpt2", gpt2, Plan(steps=150, lr=1e-3, optimizer="adamw", clip=1.0), None,
             slow=True),
    Scenario("healthy language model, Adam", "lstm", lstm, Plan(steps=150, lr=3e-3, optimizer="adam", clip=1.0),
             None, slow=True),
    Scenario("healthy, converges to ~0 loss", "mlp", lambda: _memoriser("mlp"),
             Plan(steps=150, lr=1e-2, optimizer="adam", train_batches=1), None,
             allowed_info=("VanishingGradient",)),
]

SCENARIOS: list[Scenario] = PATHOLOGIES + HEALTHY


# -- judging ---------------------------------------------------------------------------------------


@dataclass
class Verdict:
    scenario: Scenario
    ok: bool
    detail: str
    delay: int | None  # steps after onset of the intended rule's first fitting finding
    fired: dict[str, int | str]  # rule -> steps after onset of its first finding (healthy: its step)


def onset_of(expect: Expectation, outcome: Outcome) -> int:
    if expect.onset == "best_eval":
        return min(range(len(outcome.eval_losses)), key=outcome.eval_losses.__getitem__)
    return int(expect.onset)


def judge(scenario: Scenario, outcome: Outcome) -> Verdict:
    expect = scenario.expect
    if expect is None:
        loud = [f for f in outcome.findings
                if not (f.severity == Severity.INFO and f.rule in scenario.allowed_info)]
        fired = {f.rule: f.step for f in reversed(outcome.findings)}
        detail = "; ".join(f"{f.rule} at step {f.step} ({f.severity.name.lower()}): {f.message}" for f in loud)
        return Verdict(scenario, not loud, detail or "nothing fired", None, fired)
    onset = onset_of(expect, outcome)
    fired = {f.rule: f.step - onset for f in reversed(outcome.findings) if f.mode == expect.mode}
    for f in outcome.findings:  # findings of the other mode: their own step, labelled
        if f.mode != expect.mode and f.rule not in fired:
            fired[f.rule] = f"{f.mode} step {f.step}"
    hits = [f for f in outcome.findings if f.rule == expect.rule and f.mode == expect.mode
            and (expect.where is None or expect.where in f.tensors)]
    problems = []
    delay = hits[0].step - onset if hits else None
    if not hits:
        problems.append(f"{expect.rule} never named {expect.where or 'it'}")
    elif not 0 <= delay <= expect.delay:
        problems.append(f"{expect.rule} fired {delay} steps after the onset (allowed 0..{expect.delay})")
    for f in outcome.findings:
        if f.rule in expect.forbid and f.severity >= Severity.WARNING:
            problems.append(f"{f.rule} must not fire here: {f.message}")
    seen = "; ".join(f"{f.rule}@{f.step}{'/' + f.mode if f.mode != 'train' else ''} {list(f.tensors)[:3]}"
                     for f in outcome.findings)
    return Verdict(scenario, not problems, "; ".join(problems) + (f" (fired: {seen})" if problems else ""), delay, fired)


def evaluate(scenario: Scenario) -> Verdict:
    return judge(scenario, scenario.run())


def first_message(outcome: Outcome, rule: str) -> str | None:
    return next((f.message for f in outcome.findings if f.rule == rule), None)


__all__ = ["HEALTHY", "PATHOLOGIES", "SCENARIOS", "Expectation", "Kit", "Outcome", "Plan", "Scenario", "Verdict",
           "evaluate", "judge", "train"]
