"""The training step (gmmvit.run.step) and the record of the fast paths a run took."""

import json

import pytest
import torch

from gmmvit.errors import ConfigError
from gmmvit.run.profiling import StepProfiler
from gmmvit.run.step import EagerStep, step_graph_setting
from gmmvit.run.train import train
from test_train import TINY


def test_step_graph_auto_is_off_on_the_cpu():
    assert step_graph_setting("auto", torch.device("cpu"), None, drop_last=True) is None


def test_step_graph_auto_is_off_when_compile_already_uses_cuda_graphs():
    assert step_graph_setting("auto", torch.device("cuda"), "reduce-overhead", drop_last=True) is None


def test_step_graph_auto_is_off_when_the_last_batch_can_be_short():
    assert step_graph_setting("auto", torch.device("cuda"), "default", drop_last=False) is None


def test_step_graph_auto_captures_a_compiled_or_eager_cuda_step():
    assert step_graph_setting("auto", torch.device("cuda"), "default", drop_last=True) == "auto"
    assert step_graph_setting("auto", torch.device("cuda"), None, drop_last=True) == "auto"


def test_step_graph_true_where_it_cannot_apply_says_why():
    with pytest.raises(ConfigError, match="needs CUDA"):
        step_graph_setting("true", torch.device("cpu"), None, drop_last=True)


def test_step_graph_true_on_the_cpu_is_refused_before_any_data_is_read(tmp_path):
    from test_faults import one_line_error, run_cli

    # CIFAR-10 is not in this empty folder: reading data first would end in the dataset's error instead
    out = run_cli(["dataset=cifar10", "step_graph=true", "logger=none", f"paths.data={tmp_path}",
                   f"sweep=pytest-{tmp_path.name}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert one_line_error(out)[-1] == "gmmvit: error: step_graph=true cannot apply: it needs CUDA"


def test_step_graph_true_with_fused_on_a_single_run_is_checked_as_the_run_alone_it_trains(tmp_path):
    from test_faults import one_line_error, run_cli

    # no -m: fused forms no group, so step_graph applies, and on the CPU cannot
    out = run_cli(["dataset=cifar10", "fused=2", "step_graph=true", "logger=none", f"paths.data={tmp_path}",
                   f"sweep=pytest-{tmp_path.name}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert one_line_error(out)[-1] == "gmmvit: error: step_graph=true cannot apply: it needs CUDA"


def test_step_graph_refuses_an_unknown_value():
    with pytest.raises(ConfigError, match="step_graph must be one of"):
        step_graph_setting("sometimes", torch.device("cpu"), None, drop_last=True)


def test_eager_step_is_forward_loss_backward_and_one_optimizer_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    reference = torch.nn.Linear(4, 3)
    reference.load_state_dict(model.state_dict())
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    step = EagerStep(model, model, torch.optim.SGD(model.parameters(), lr=0.1),
                     torch.nn.functional.cross_entropy, lambda: torch.autocast("cpu", enabled=False))
    loss = step(x, y)
    ref_loss = torch.nn.functional.cross_entropy(reference(x), y)
    ref_loss.backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.1 * p.grad
    assert torch.allclose(loss, ref_loss.detach())
    assert all(torch.allclose(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def recorded_paths(compose_config, run_dir, data_dir, overrides) -> dict:
    """The ``paths`` a tiny digits run with ``overrides`` writes into its metrics.json."""
    train(compose_config(["dataset=digits", *overrides, *TINY], run_dir=run_dir, data_dir=data_dir))
    return json.loads((run_dir / "metrics.json").read_text())["paths"]


def test_a_run_records_the_paths_it_took(compose_config, tmp_path, data_dir):
    paths = recorded_paths(compose_config, tmp_path / "run", data_dir, ["mask=gmm", "data_on_gpu=true"])
    assert paths == {"compiled": "eager", "attention": "explicit", "data": "device", "precision": "fp32",
                     "step": "eager", "device": "cpu"}


def test_a_run_without_a_mask_records_the_fused_attention_and_the_loader(compose_config, tmp_path, data_dir):
    paths = recorded_paths(compose_config, tmp_path / "run", data_dir, ["mask=none", "data_on_gpu=false"])
    assert (paths["attention"], paths["data"]) == ("sdpa", "loader")


def test_profile_steps_writes_a_profile_of_the_real_loop(compose_config, tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr("gmmvit.run.profiling.WAIT_STEPS", 1)
    run_dir = tmp_path / "run"
    cfg = compose_config(["dataset=digits", "mask=gmm", "profile_steps=1", *TINY], run_dir=run_dir,
                         data_dir=data_dir)
    train(cfg)
    text = (run_dir / "profile.md").read_text()
    assert "ms/step" in text and "| host op |" in text
    assert (run_dir / "trace.json").exists()


def test_profile_json_holds_the_figures_profile_md_shows(compose_config, tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr("gmmvit.run.profiling.WAIT_STEPS", 1)
    run_dir = tmp_path / "run"
    train(compose_config(["dataset=digits", "mask=gmm", "profile_steps=1", *TINY], run_dir=run_dir,
                         data_dir=data_dir))
    fig = json.loads((run_dir / "profile.json").read_text())
    text = (run_dir / "profile.md").read_text()
    assert f"wall {fig['wall_ms']:.2f} ms/step" in text
    assert fig["top_host"] and all(f"`{h['name'][:90]}`" in text for h in fig["top_host"])


def test_profiler_does_nothing_without_profile_steps(tmp_path):
    profiler = StepProfiler(None, tmp_path, torch.device("cpu"), wait=0)
    for _ in range(3):
        profiler.step()
    assert not (tmp_path / "profile.md").exists()
