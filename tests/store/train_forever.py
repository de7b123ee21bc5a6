"""A training subprocess for the crash test: trains until killed, flushing parts every 0.1 s."""

import sys

import torch

import gradprobe

out = sys.argv[1]
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
config = {"preset": "default", "store": {"flush_seconds": 0.1}}
probe = gradprobe.Probe(model, opt, out_dir=out, config=config)
step = 0
while True:
    x = torch.randn(8, 16)
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    probe.step(loss=loss)
    step += 1
    if step == 20:
        print("ready", flush=True)
