"""AutocastOptimWrapper: bf16 autocast training on the CPU, one step against a torch.autocast reference."""
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper


def test_autocast_optim_wrapper_trains_in_bf16_on_cpu():
    """The forward runs in bf16 and one update_params is one SGD step on the bf16 loss's gradient:
    ``w - lr * grad``, with the gradient from a plain torch.autocast reference; fp32 weights stay fp32."""
    import copy
    model = nn.Linear(8, 8)
    reference = copy.deepcopy(model)
    wrapper = build_optim_wrapper(model, dict(type='AutocastOptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    x = torch.randn(4, 8)
    with wrapper.optim_context(model):
        out = model(x)
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().mean())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        reference_out = reference(x)
    reference_out.float().square().mean().backward()
    for param, ref in zip(model.parameters(), reference.parameters()):
        assert param.dtype == torch.float32 and ref.grad.abs().sum() > 0
        assert not torch.equal(param, ref)  # the step changed the weights
        torch.testing.assert_close(param, ref.detach().add(ref.grad, alpha=-0.1), rtol=0, atol=0)
        assert param.grad is None or not param.grad.any()  # and cleared the gradients for the next one
