"""The engine's Adam is torch.optim.Adam's update, without torch.optim's one-off import of torch._dynamo."""
import subprocess
import sys

import pytest
import torch

from ODERegistrationLib.engine.core.adam import Adam
from ODERegistrationLib.engine.core.network import VelocityNet


def fitted_weights(make_optimizer, learning_rate: float):
    """The net's weights after 30 steps on a loss with gradients of every size and sign."""
    torch.manual_seed(0)
    net = VelocityNet(2, fields=3).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net.parameters(), learning_rate)
    grids, coarser = torch.randn(2, 2, 16, 16), torch.randn(6, 2, 16, 16)
    for _ in range(30):
        optimizer.zero_grad()
        (net(grids, coarser) ** 2).mean().backward()
        optimizer.step()
    return [parameter.detach() for parameter in net.parameters()]


@pytest.mark.parametrize("learning_rate", [5e-4, 3e-2])
def test_adam_steps_are_torch_optim_adams_bit_for_bit(learning_rate):
    ours = fitted_weights(lambda parameters, lr: Adam(parameters, lr=lr), learning_rate)
    theirs = fitted_weights(lambda parameters, lr: torch.optim.Adam(parameters, lr=lr), learning_rate)
    start = fitted_weights(lambda parameters, lr: Adam(parameters, lr=0.0), learning_rate)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert not all(torch.equal(a, b) for a, b in zip(ours, start))  # the steps moved the weights


def test_a_registration_does_not_import_torch_compiles_machinery():
    """torch.optim imports torch._dynamo when its first optimizer is made: 1.3 s of every command-line run."""
    script = ("import sys, torch\n"
              "from ODERegistrationLib.engine.core.optimizer import optimize_fields\n"
              "from ODERegistrationLib.engine import RegistrationParameters\n"
              "image = torch.rand(1, 1, 32, 32)\n"
              "optimize_fields(image, image.roll(2, -1), (1.0, 1.0), RegistrationParameters(iterations=2))\n"
              "print('torch._dynamo' in sys.modules)\n")
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
