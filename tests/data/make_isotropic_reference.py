"""Writes ``isotropic_reference.pt``: what LightMedSeg computed BEFORE the per-axis resolution schedule existed
(issue 9), so that tests/test_schedule.py can check that isotropic plans still give exactly that network.

Generated with the package at commit bae9a94 (the last commit before the schedule):

    git archive bae9a94 | tar -x -C /tmp/ref && PYTHONPATH=/tmp/ref python tests/data/make_isotropic_reference.py

Contents: ``small`` — for a small LightMedSeg initialised with ``torch.manual_seed(0)`` and an odd-sized input
drawn after ``torch.manual_seed(1)``: its eval output and the gradient (all parameters, concatenated) of a fixed
training-mode loss; the test rebuilds network and input from the same seeds. ``shapes`` — the state-dict
key -> shape table of ``LightMedSeg(4, 4)`` and of its Standard-Conv variant (the checkpoints users have),
without the values (2 MB each).
"""
import sys
from pathlib import Path

import torch

from nnunetv2_lightmedseg import LightMedSeg

SMALL = dict(encoder_widths=(8, 8, 16, 16), stem_channels=8, router_channels=8, num_anchors=4)
INPUT_SHAPE = (1, 2, 17, 18, 17)


def main(out: Path) -> None:
    torch.manual_seed(0)
    net = LightMedSeg(2, 3, **SMALL)
    torch.manual_seed(1)
    x = torch.randn(INPUT_SHAPE)
    y = net(x)
    (y.square().mean() + y[:, 1].mean()).backward()
    grads = torch.cat([p.grad.flatten() for p in net.parameters()])
    with torch.no_grad():
        y_eval = net.eval()(x)
    shapes = {name: {k: tuple(v.shape) for k, v in LightMedSeg(4, 4, **opts).state_dict().items()}
              for name, opts in (("default", {}), ("standard_conv", {"conv_type": "standard"}))}
    torch.save({"small": {"options": SMALL, "input_shape": INPUT_SHAPE, "eval_output": y_eval, "grads": grads},
                "shapes": shapes}, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("isotropic_reference.pt"))
