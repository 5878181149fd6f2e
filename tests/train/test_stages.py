import pytest
import torch

from tango3d_core.train.stages import StageSpec, default_schedule


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(3, 3)
        self.head = torch.nn.Linear(3, 2)


def test_configure_freezes_and_groups():
    m = Toy()
    spec = StageSpec(name="s", steps=1, lr=1e-3, trainable=("head.",), slow=("encoder.",), slow_lr_scale=0.1)
    groups = spec.configure(m)
    assert [g["lr_scale"] for g in groups] == [1.0, 0.1]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in m.head.parameters()}
    assert all(p.requires_grad for p in m.parameters())
    spec2 = StageSpec(name="s2", steps=1, lr=1e-3, trainable=("head.",))
    groups = spec2.configure(m)
    assert len(groups) == 1
    assert not any(p.requires_grad for p in m.encoder.parameters())
    assert all(p.requires_grad for p in m.head.parameters())


def test_typo_in_prefix_is_an_error():
    with pytest.raises(ValueError, match="heads"):
        StageSpec(name="s", steps=1, lr=1e-3, trainable=("heads.",)).configure(Toy())


def test_bundled_checkpoint_was_trained_with_the_default_tiny_schedule():
    """The README's one command must reproduce assets/checkpoint: its recorded schedule is today's default."""
    import dataclasses
    import json
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "assets" / "checkpoint" / "config.json"
    recorded = json.loads(cfg.read_text())["extra"]["schedule"]
    assert recorded == json.loads(json.dumps([dataclasses.asdict(s) for s in default_schedule("tiny")]))


@pytest.mark.parametrize("name", ["canonical-xyz", "single-stage", "global-only"])
def test_baseline_command_reproduces_its_schedule(name):
    """A baseline's rebuild command spells out its older steps; they must give the schedule it recorded."""
    import dataclasses
    import json
    from pathlib import Path

    from tango3d_core.models.checkpoint import BASELINE_BUILD_COMMANDS
    from tango3d_core.train.cli import parse_args, resolve_model_config, resolve_schedule

    args = parse_args(BASELINE_BUILD_COMMANDS[name].split()[3:])
    # the baselines have no foreground head, so no foreground stage
    sched = resolve_schedule(args, foreground=resolve_model_config(args).foreground_head)
    assert "foreground" not in [s.name for s in sched]
    cfg = Path(__file__).resolve().parents[2] / "assets" / "baselines" / name / "config.json"
    recorded = json.loads(cfg.read_text())["extra"]["schedule"]
    assert recorded == json.loads(json.dumps([dataclasses.asdict(s) for s in sched]))


@pytest.mark.parametrize("name", ["canonical-xyz", "single-stage", "global-only"])
def test_baseline_command_reproduces_its_architecture_and_is_quoted_in_the_readme(name):
    """The `tiny` preset has changed since the baselines were trained (CNN, local decoder, principal
    frame): the rebuild command must still build the bundled baseline's architecture."""
    from pathlib import Path

    from tango3d_core.models.checkpoint import BASELINE_BUILD_COMMANDS, read_checkpoint_config
    from tango3d_core.train.cli import model_config_from, parse_args

    root = Path(__file__).resolve().parents[2]
    args = parse_args(BASELINE_BUILD_COMMANDS[name].split()[3:])
    assert args.model_config is not None
    built = model_config_from(root / args.model_config)
    assert built == read_checkpoint_config(root / "assets" / "baselines" / name)[0]
    assert BASELINE_BUILD_COMMANDS[name] in (root / "README.md").read_text()
