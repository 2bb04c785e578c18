"""The config schema (gmmvit.config.schema): a wrong type, an unknown choice, a value out of range or a
mistyped key is refused before anything runs, in one line naming the key, the value and what the
key takes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from gmmvit.config import checks, refusals
from gmmvit.errors import ConfigError

# a bad value in a sweep list: every job is checked before the first one starts
SWEEP_REFUSED = {
    "-m recipe.epochs=20,-1 mask=none,gmm": ("job 3/4: recipe.epochs=-1: recipe.epochs must be >= 1 "
                                             "(1 more job(s) refused too); no job was started"),
    # a preset's grid (hydra.sweeper.params) with the command line over it: num_kernels x 3 seeds
    "-m experiment=ablation/kernels mask.num_kernels=2,0": ("job 4/6: mask.num_kernels=0: mask.num_kernels must "
                                                            "be >= 1 (2 more job(s) refused too); no job was started"),
    "-m seed=0,null": "job 2/2: seed=null: seed takes a whole number; no job was started",
}

# a key only the swept options have: Hydra checks it against the default option before the jobs
SWEEP_REFUSED["-m model=swin,pit model.depths=[1,1,1]"] = (
    "model.depths is not a key of model=vit, the option Hydra checks a sweep's other overrides against before "
    "its jobs: write ++model.depths=[1,1,1] to set it on every job of the sweep")
SWEEP_REFUSED["-m mask=none,gmm mask.num_kernels=3"] = (
    "mask.num_kernels is not a key of mask=none, the option Hydra checks a sweep's other overrides against before "
    "its jobs, and of the swept options only mask=gmm has it: sweep it on its own (mask=gmm mask.num_kernels=3)")

# ++ sets a key on every job: it is checked against each job's model, not the group's default
SWEEP_REFUSED["-m model=swin,pit ++model.num_heads=[3,3,3] recipe.batch_size=0"] = (
    "recipe.batch_size=0: recipe.batch_size must be >= 1")
SWEEP_REFUSED["-m model=vit,swin ++model.depth=1 ++model.depths=[1,1,1]"] = (
    "job 1/2: model.depths=[1, 1, 1]: model=vit takes no model.depths (model=pit, model=swin have it); give it only "
    "to jobs of those (-m model=pit,swin ++model.depths=[1,1,1]), or drop it (1 more job(s) refused too); no job was "
    "started")

OVERRIDE_FIX = "write KEY=VALUE, KEY=A,B for a sweep, and quote a value holding spaces, brackets or a trailing comma"
# a sweep list ending in a comma: Hydra cannot parse it, before any job is expanded
SWEEP_REFUSED["-m mask=none,gmm,"] = f"mask=none,gmm,: Hydra cannot parse this override (mismatched input '<EOF>'); {OVERRIDE_FIX}"

REFUSED = {
    # the inputs that used to run (or crash deep inside torch)
    "seed=abc": "seed=abc: seed takes a whole number",
    "seed=null": "seed=null: seed takes a whole number",   # the value as typed, where OmegaConf shows none
    "recipe.epochs=-1": "recipe.epochs=-1: recipe.epochs must be >= 1",
    "mask=gmm mask.num_kernels=0": "mask.num_kernels=0: mask.num_kernels must be >= 1",
    "precision=fp8": "precision=fp8: precision takes one of auto, fp32, bf16",
    "recipe.batch_size=0": "recipe.batch_size=0: recipe.batch_size must be >= 1",
    "mask=gmm mask.combine=foo": "mask.combine=foo: mask.combine takes one of mul, add",
    "recipe.epochs=5": ("recipe.warmup_epochs=10.0 is not shorter than recipe.epochs=5: lower "
                        "recipe.warmup_epochs (0 = no warm-up) or raise recipe.epochs"),
    "attention=fused": "attention=fused: attention takes one of auto, explicit, flex",
    "compile=fast": ("compile=fast: compile takes one of auto, true, false, default, reduce-overhead, max-autotune, "
                     "max-autotune-no-cudagraphs"),
    "data_on_gpu=maybe": "data_on_gpu=maybe: data_on_gpu takes one of auto, true, false",
    "step_graph=sometimes": "step_graph=sometimes: step_graph takes one of auto, true, false",
    "profile_steps=0": "profile_steps=0: profile_steps must be >= 1",
    "fused=0": "fused=0: fused must be >= 1",
    "fused=abc": "fused=abc: fused takes a whole number",
    # insisted on, and a fused group cannot give it: refused, not trained without it
    "fused=4 step_graph=true": ("step_graph=true: a fused group (fused=4) does not capture its step as one CUDA graph; "
                                "set step_graph=auto (the graphed step where a job trains alone) or fused=1"),
    "dataset.train_fraction=0": "dataset.train_fraction=0.0: dataset.train_fraction must be in (0, 1]",
    "dataset.val_fraction=1": ("dataset.val_fraction=1.0: dataset.val_fraction must be in [0, 1) (1 would hold out "
                               "every training image)"),
    "mask=gmm mask.placement=after": "mask.placement=after: mask.placement takes one of pre, post",
    "device=tpu": "device=tpu: device takes auto, cpu, cuda or cuda:N",
    "model.pool=cls": "model.pool=cls: model.pool takes one of auto, token, mean, class_attention",
    "dataset.resize=crop": "dataset.resize=crop: dataset.resize takes one of pad, resize",
    "logger.mode=cloud": "logger.mode=cloud: logger.mode takes one of auto, online, offline",
    "deterministic=maybe": "deterministic=maybe: deterministic takes true or false",
    "limit_train=0": "limit_train=0: limit_train must be >= 1",
    "recipe.aug.random_erasing_max_area=0": ("recipe.aug.random_erasing_max_area=0.0: recipe.aug.random_erasing_max_area "
                                             "must be in (0, 1]"),
    "recipe.mix.prob=1.5": "recipe.mix.prob=1.5: recipe.mix.prob must be in [0, 1]",
    "recipe.aug.ops=timm": "recipe.aug.ops=timm: recipe.aug.ops takes one of authors, torchvision",
    "workers=-1": "workers=-1: workers takes auto or a whole number >= 0",
    "recipe.optimizer.lr=fast": "recipe.optimizer.lr=fast: recipe.optimizer.lr takes a number >= 0",
    # keys a user is likely to mistype or put in the wrong group
    "recipe.epoch=5": "recipe.epoch is not a key of recipe (did you mean recipe.epochs?)",
    "+recipe.epoch=5": "recipe.epoch is not a key of recipe (did you mean recipe.epochs?)",
    "epochs=5": "epochs is not a config key (did you mean recipe.epochs?)",
    "lr=0.01": "lr is not a config key (did you mean recipe.optimizer.lr?)",
    "recipe.lr=0.01": "recipe.lr is not a key of recipe (did you mean recipe.optimizer.lr?)",
    "batch_size=64": "batch_size is not a config key (did you mean recipe.batch_size?)",
    "datset=digits": "datset is not a config key (did you mean dataset?)",
    "maks=gmm": "maks is not a config key (did you mean mask?)",
    "expriment=demo": "expriment is not a config key (did you mean experiment?)",
    "mask=gmm mask.num_kernel=3": "mask.num_kernel is not a key of mask (did you mean mask.num_kernels?)",
    "mask.num_kernels=3": "mask.num_kernels is not a key of mask (mask=gmm has it)",
    "model.embed_dimm=64": "model.embed_dimm is not a key of model (did you mean model.embed_dim?)",
    # added with ++, so Hydra lets it through: the model class is what takes it or not
    "++model.window_size=4": ("model.window_size=4: model=vit takes no model.window_size (model=swin has it); give it "
                              "only to jobs of those (-m model=swin ++model.window_size=4), or drop it"),
    "++model.deptj=4": "model.deptj=4: model=vit takes no model.deptj (did you mean model.depth?); drop it",
    "recipe.warmup=0": "recipe.warmup is not a key of recipe (did you mean recipe.warmup_epochs?)",
    # overrides Hydra cannot parse or combine: a trailing comma, a missing '=', a '+' on a chosen group
    "mask=none,gmm,": SWEEP_REFUSED["-m mask=none,gmm,"],
    "epochs": f"epochs: Hydra cannot parse this override (missing EQUAL at '<EOF>'); {OVERRIDE_FIX}",
    "+mask=gmm": ("mask is chosen twice: choose its option with mask=NAME, without '+' (a '+mask=NAME' adds a "
                  "second one where the defaults already choose it)"),
    "experiment=demo +experiment=demo": ("experiment is given more than once: give experiment=NAME once (a second "
                                         "preset stacks as +experiment@_global_=NAME)"),
    "+experiment@global=protocol/clean": ("+experiment@global=protocol/clean: @global puts the option's keys under "
                                          "'global', which the config lacks; a preset stacks at the top as "
                                          "+experiment@_global_=protocol/clean"),
}


def refusal(compose_config, overrides) -> str:
    """The line ``python src/train.py <overrides>`` prints after ``gmmvit: error:``."""
    try:
        cfg = compose_config(overrides)
    except Exception as exc:
        line = refusals.explain(exc, overrides)  # as train.py passes its command line
        assert line is not None, f"not a schema refusal: {exc}"
        return line
    with pytest.raises(ConfigError) as refused:
        checks.check(cfg)
    return str(refused.value)


@pytest.mark.parametrize("args", list(REFUSED))
def test_bad_value_or_key_is_refused_in_one_line_naming_key_value_and_accepted(compose_config, args):
    assert refusal(compose_config, args.split()) == REFUSED[args]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_machine_without_gpu_is_refused(compose_config):
    assert refusal(compose_config, ["device=cuda"]) == (
        "device=cuda: this machine has no GPU torch can use; use device=auto (a free GPU, else the CPU) or "
        "device=cpu")


def test_a_gpu_index_the_machine_lacks_is_refused(compose_config):
    line = refusal(compose_config, [f"device=cuda:{torch.cuda.device_count()}"])
    assert line.startswith(f"device=cuda:{torch.cuda.device_count()}: this machine ")


@pytest.mark.parametrize("args", ["compile=reduce-overhead", "compile=false", "compile=true", "device=cuda:0",
                                  "data_on_gpu=true", "workers=3", "threads=0", "recipe.warmup_epochs=0.5",
                                  "mask=gmm mask.combine=add", "model=pit mask=elm", "logger=none",
                                  "fused=4 step_graph=auto", "fused=4 profile_steps=3", "fused=1 step_graph=true"])
def test_good_values_pass(compose_config, args):
    cfg = compose_config(args.split())
    checks.check(cfg, machine=False)


def test_the_default_config_of_every_option_passes(compose_config):
    for model in ("vit", "swin", "cait", "pit", "t2t"):
        for mask in ("none", "elm", "gmm"):
            for dataset in ("cifar10", "cifar100", "svhn", "tinyimagenet", "fashion_mnist", "digits"):
                checks.check(compose_config([f"model={model}", f"mask={mask}", f"dataset={dataset}"]),
                             machine=False)


def test_choices_reach_the_code_as_plain_strings(compose_config):
    cfg = compose_config(["mask=gmm", "precision=bf16"])
    assert cfg.precision == "bf16" and f"{cfg.precision}" == "bf16"
    from gmmvit.run.train import build_model

    masks = [m for m in build_model(cfg).modules() if hasattr(m, "combine")]
    assert masks and all(type(m.combine) is str for m in masks)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args", ["seed=abc", "recipe.epochs=-1", "recipe.epoch=5",
                                  "-m mask=none,gmm recipe.batch_size=0",
                                  "-m recipe.epochs=20,-1 mask=none,gmm",
                                  "-m experiment=ablation/kernels mask.num_kernels=2,0",
                                  "-m mask=none,gmm,", "+mask=gmm", "-m model=swin,pit model.depths=[1,1,1]",
                                  "-m mask=none,gmm mask.num_kernels=3",
                                  "-m model=swin,pit ++model.num_heads=[3,3,3] recipe.batch_size=0",
                                  "-m model=vit,swin ++model.depth=1 ++model.depths=[1,1,1]"])
def test_the_command_line_prints_one_line_exits_2_and_reads_no_data(tmp_path, args):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    flags = [a for a in args.split() if a.startswith("-")]
    overrides = [a for a in args.split() if not a.startswith("-")]
    out = subprocess.run([sys.executable, "src/train.py", *flags, "dataset=fashion_mnist", "logger=none",
                          f"paths.data={data}", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep",
                          *overrides], cwd=REPO, capture_output=True, text=True, env=env, timeout=110)
    expected = {**REFUSED, **SWEEP_REFUSED}.get(args, "recipe.batch_size=0: recipe.batch_size must be >= 1")
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [f"gmmvit: error: {expected}"], out.stderr
    assert not data.exists() and not (tmp_path / "run" / "metrics.json").exists()
