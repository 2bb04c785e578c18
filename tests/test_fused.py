"""Fused runs (gmmvit.run.fused): each member of a fused model is the run it stands for.

Equivalence is checked on the CPU in fp32 for every model x mask, on 1-block models of each
architecture: with the same weights and the same batch, each member's loss and every gradient
equal those of the same model alone on the same (explicit) attention path, to a relative 1e-5 of
each tensor's scale; each member's init and data order equal the unfused run's at its seed,
exactly. With stochastic depth, each member given the keep masks its run draws from a random
state (``draw_keep_masks``) computes what its model alone computes from that state.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from timm.loss import SoftTargetCrossEntropy
from torch.utils.data import DataLoader, Dataset

from gmmvit.config.compose import compose_config
from gmmvit.data.sampling import RepeatedPassSampler
from gmmvit.errors import ConfigError
from gmmvit.nn import mask_choice
from gmmvit.nn.attention import use_attention
from gmmvit.run import fused
from gmmvit.run.recipe import build_optimizer
from gmmvit.run.step import EagerStep
from gmmvit.run.train import build_model, seed_everything

MODELS = ["vit", "swin", "cait", "pit", "t2t"]
MASKS = ["none", "elm", "gmm"]
ONE_BLOCK = {
    "vit": ["model.depth=1", "model.embed_dim=32", "model.num_heads=2"],
    "swin": ["model.depths=[1,1]", "model.num_heads=[1,2]", "model.embed_dim=16"],
    "cait": ["model.depth=1", "model.cls_depth=1", "model.embed_dim=32", "model.num_heads=2", "model.head_dim=8",
             "model.mlp_hidden=32"],
    "pit": ["model.depths=[1,1,1]", "model.num_heads=[1,2,4]", "model.embed_dim=16", "model.head_dim=8"],
    "t2t": ["model.depth=1", "model.embed_dim=32", "model.num_heads=2", "model.token_dim=16"],
}
SEEDS = (0, 1)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def member_cfgs(model, mask, *extra, seeds=SEEDS):
    return [compose_config([f"model={model}", f"mask={mask}", "dataset=digits", f"seed={s}", "model.drop_path=0",
                            *ONE_BLOCK[model], *extra]) for s in seeds]


def batch(cfg, members=len(SEEDS), n=4):
    g = torch.Generator().manual_seed(7)
    images = torch.randn(members, n, cfg.dataset.channels, cfg.dataset.img_size, cfg.dataset.img_size, generator=g)
    targets = torch.randn(members, n, cfg.dataset.num_classes, generator=g).softmax(-1)  # Mixup-style soft targets
    return images, targets


def assert_relatively_close(actual, expected, what):
    scale = expected.abs().max().clamp(min=1e-12)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(scale), msg=lambda m: f"{what}: {m}")


def assert_each_member_computes_its_model_alone(cfgs):
    members = [fused.build_member(c) for c in cfgs]
    alone = [copy.deepcopy(m).train() for m in members]
    images, targets = batch(cfgs[0], members=len(cfgs))
    sites = fused.drop_path_sites(members[0], images[0], contextlib.nullcontext)
    net = fused.FusedModel(members).train()
    keeps = []
    for g in range(len(cfgs)):
        torch.manual_seed(100 + g)  # member g's random state, as its run's stands at its forward
        keeps.append(fused.draw_keep_masks(sites, images.shape[1], "cpu"))
    criterion = SoftTargetCrossEntropy()
    losses = fused.member_losses(criterion, net(images, fused.stacked_keep_masks(keeps)), targets)
    losses.sum().backward()
    for g, ref in enumerate(alone):
        torch.manual_seed(100 + g)
        loss = criterion(ref(images[g]), targets[g])
        loss.backward()
        assert_relatively_close(losses[g].detach(), loss.detach(), f"member {g} loss")
        for name, p in ref.named_parameters():
            stacked = net.params[net.keys[g][name]]
            if p.grad is None:  # T2T's unused class token and LayerNorm (the authors' parameter count)
                assert stacked.grad is None, f"member {g}: {name} has a gradient alone it has not"
                continue
            assert_relatively_close(stacked.grad[g], p.grad, f"member {g} grad {name}")
    return net


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("model", MODELS)
def test_each_fused_member_has_the_loss_and_gradients_of_its_model_alone(model, mask):
    assert_each_member_computes_its_model_alone(member_cfgs(model, mask))


@pytest.mark.parametrize("model", MODELS)
def test_each_fused_member_drops_the_paths_its_model_alone_drops_from_the_same_random_state(model):
    cfgs = member_cfgs(model, "gmm", "model.drop_path=0.5", "model.drop_path_schedule=constant")  # 1 block: not 0
    images = batch(cfgs[0])[0][0]
    assert fused.drop_path_sites(fused.build_member(cfgs[0]), images, contextlib.nullcontext), "nothing drawn"
    assert_each_member_computes_its_model_alone(cfgs)


# ViT pools by its class token without a mask (the authors'): its none runs fuse with masked ones
# only where model.pool is set alike
MIXED_MASKS = {"vit": ["model.pool=mean"], "swin": [], "cait": [], "pit": [], "t2t": []}


@pytest.mark.parametrize("model", MODELS)
def test_members_with_different_masks_each_have_the_loss_and_gradients_of_their_model_alone(model):
    cfgs = [member_cfgs(model, mask, *MIXED_MASKS[model], seeds=(seed,))[0]
            for seed, mask in enumerate(MASKS)]
    net = assert_each_member_computes_its_model_alone(cfgs)
    assert any(".mask.choices." in key for key in net.params), "the masks were not stacked as choices"


def test_members_whose_masks_combine_or_sit_differently_each_compute_their_own():
    options = [[], ["mask.combine=add"], ["mask.placement=post"], ["mask.num_kernels=2"]]
    cfgs = [member_cfgs("swin", "gmm", *extra, seeds=(seed,))[0] for seed, extra in enumerate(options)]
    cfgs.append(member_cfgs("swin", "none", seeds=(9,))[0])
    assert_each_member_computes_its_model_alone(cfgs)


def test_a_mask_a_member_does_not_own_gets_no_gradient_and_stays_zero():
    cfgs = [member_cfgs("swin", mask, seeds=(seed,))[0] for seed, mask in enumerate(["none", "gmm"])]
    net = assert_each_member_computes_its_model_alone(cfgs)
    for key, p in net.params.items():
        if ".mask.choices." in key:
            owner = next(g for g in range(2) if key in net.keys[g].values())
            assert torch.count_nonzero(p[1 - owner]) == 0 and torch.count_nonzero(p.grad[1 - owner]) == 0, key


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("model", MODELS)
def test_each_fused_member_starts_from_the_unfused_runs_init_at_its_seed(model, mask):
    cfgs = member_cfgs(model, mask, "model.drop_path=0.1")
    net = fused.FusedModel([fused.build_member(c) for c in cfgs])
    for g, cfg in enumerate(cfgs):
        seed_everything(cfg.seed, cfg.deterministic)  # as train() does before build_model
        unfused = build_model(cfg)
        state = net.member_state(g)
        assert state.keys() == unfused.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in unfused.state_dict().items()), f"member {g} init"
        unfused.load_state_dict(state, strict=True)


class Indices(Dataset):
    """Item i is (i, i): a batch shows which items it holds and in which order."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i


def test_each_fused_member_draws_its_batches_from_its_own_loader_in_its_runs_order():
    cfgs = member_cfgs("vit", "gmm", seeds=(0, 1, 2))
    loaders = [DataLoader(Indices(), batch_size=8, drop_last=True,
                          sampler=RepeatedPassSampler(len(Indices()), c.recipe.passes_per_epoch, c.seed)) for c in cfgs]
    randoms = [fused.MemberRandom(c.seed) for c in cfgs]
    drawn = [[] for _ in cfgs]
    for _, targets, _ in fused.stacked_batches(loaders, randoms):
        for g, t in enumerate(targets):
            drawn[g] += t.tolist()
    for g, cfg in enumerate(cfgs):  # train() and each member draw theirs from gmmvit.run.loaders.training_loader
        assert drawn[g] == list(RepeatedPassSampler(40, cfg.recipe.passes_per_epoch, cfg.seed)), f"member {g}"
    assert drawn[0] != drawn[1]


def test_member_random_states_are_each_seeds_own_and_leave_the_global_stream_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b, a_again = fused.MemberRandom(0), fused.MemberRandom(1), fused.MemberRandom(0)
    with a:
        first = torch.rand(3)
    with b:
        other = torch.rand(3)
    with a_again:
        repeat = torch.rand(3)
    with a:
        second = torch.rand(3)
    assert torch.equal(first, repeat) and not torch.equal(first, other) and not torch.equal(first, second)
    assert torch.equal(torch.rand(3), expected_next)


def test_one_fused_step_with_clipping_updates_each_member_as_its_own_step_would():
    cfgs = member_cfgs("vit", "gmm", "recipe.grad_clip=0.05")
    members = [fused.build_member(c) for c in cfgs]
    alone = [copy.deepcopy(m).train() for m in members]
    net = fused.FusedModel(members).train()
    criterion = SoftTargetCrossEntropy()
    step = fused.FusedStep(net, build_optimizer(cfgs[0].recipe, net), criterion, contextlib.nullcontext, 0.05)
    images, targets = batch(cfgs[0])
    step(images, targets)
    for g, ref in enumerate(alone):
        EagerStep(ref, ref, build_optimizer(cfgs[0].recipe, ref), criterion, contextlib.nullcontext, 0.05)(images[g], targets[g])
        for name, p in ref.named_parameters():
            assert_relatively_close(net.params[name][g].detach(), p.detach(), f"member {g} {name} after the step")


def test_a_member_whose_loss_is_not_finite_leaves_the_others_updates_their_own():
    cfgs = member_cfgs("vit", "gmm")
    members = [fused.build_member(c) for c in cfgs]
    alone = copy.deepcopy(members[0]).train()
    net = fused.FusedModel(members).train()
    criterion = SoftTargetCrossEntropy()
    step = fused.FusedStep(net, build_optimizer(cfgs[0].recipe, net), criterion, contextlib.nullcontext)
    images, targets = batch(cfgs[0])
    images[1] = float("nan")
    losses = step(images, targets, active=torch.tensor([True, False]))
    assert torch.isfinite(losses[0]) and not torch.isfinite(losses[1])
    EagerStep(alone, alone, build_optimizer(cfgs[0].recipe, alone), criterion, contextlib.nullcontext)(images[0], targets[0])
    for name, p in alone.named_parameters():
        assert_relatively_close(net.params[name][0].detach(), p.detach(), f"member 0 {name}")


def test_runs_whose_parameters_differ_beyond_their_masks_refuse_to_fuse_naming_the_parameter():
    none, gmm = member_cfgs("vit", "none", seeds=(0,))[0], member_cfgs("vit", "gmm", seeds=(1,))[0]
    with pytest.raises(ConfigError, match="fused: member 1 does not stack with member 0 .*param .pos_embed"):
        fused.FusedModel([fused.build_member(none), fused.build_member(gmm)])


def test_the_stacking_key_tells_apart_runs_that_differ_beyond_their_masks():
    key = lambda model, mask, *extra: fused.stacking_key(member_cfgs(model, mask, *extra, seeds=(0,))[0])  # noqa: E731
    assert key("swin", "none") == key("swin", "gmm") == key("swin", "elm", "mask.combine=add")
    assert key("vit", "elm") == key("vit", "gmm") != key("vit", "none")  # the class token, the pooling
    assert key("vit", "none", "model.pool=mean") == key("vit", "gmm")
    assert key("swin", "gmm") != key("swin", "gmm", "model.drop_path=0.2")


@pytest.mark.parametrize("attention", ["explicit", "auto"])
def test_a_model_given_its_groups_masks_computes_its_own_function_on_every_attention_path(attention):
    # combine=add takes SDPA on the auto path, with the picked mask as its float attn_mask
    cfgs = [member_cfgs("swin", mask, *extra, seeds=(seed,))[0]
            for seed, (mask, extra) in enumerate([("none", []), ("gmm", ["mask.combine=add"])])]
    models = []
    for cfg in cfgs:
        seed_everything(cfg.seed, cfg.deterministic)
        models.append(build_model(cfg).eval())
    alone = [copy.deepcopy(m) for m in models]
    mask_choice.with_mask_choices(models)
    images = batch(cfgs[0], members=1)[0][0]
    for g, (model, ref) in enumerate(zip(models, alone)):
        use_attention(model, attention)
        torch.testing.assert_close(model(images), use_attention(ref, "explicit")(images), rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f"member {g}: {m}")
