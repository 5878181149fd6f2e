import pytest
import torch

from tango3d_core.train.state import optimizer_state_from_files, optimizer_state_to_files


def _model_and_opt():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    return m, opt


def _step(m, opt, x):
    opt.zero_grad()
    m(x).square().mean().backward()
    opt.step()


def test_resume_continues_exactly(tmp_path):
    x = torch.randn(8, 4)
    m1, o1 = _model_and_opt()
    for _ in range(3):
        _step(m1, o1, x)
    optimizer_state_to_files(o1, tmp_path, extra={"step": 3})
    # a fresh optimizer restored from files must take the same next step
    m2, o2 = _model_and_opt()
    m2.load_state_dict(m1.state_dict())
    assert optimizer_state_from_files(o2, tmp_path) == {"step": 3}
    _step(m1, o1, x)
    _step(m2, o2, x)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_without_restore_the_step_differs(tmp_path):
    # guards the test above: a fresh AdamW really takes a different step
    x = torch.randn(8, 4)
    m1, o1 = _model_and_opt()
    for _ in range(3):
        _step(m1, o1, x)
    m2, o2 = _model_and_opt()
    m2.load_state_dict(m1.state_dict())
    _step(m1, o1, x)
    _step(m2, o2, x)
    assert any(not torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_mismatched_parameters_rejected(tmp_path):
    m, o = _model_and_opt()
    _step(m, o, torch.randn(2, 4))
    optimizer_state_to_files(o, tmp_path)
    other = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError):
        optimizer_state_from_files(other, tmp_path)
    with pytest.raises(FileNotFoundError):
        optimizer_state_from_files(o, tmp_path / "missing")
