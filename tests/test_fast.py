"""Fast paths equal the reference paths: FlexAttention and SDPA vs explicit scores, and the
GPU-resident batched augmentation (run here on CPU tensors) vs the per-image pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from PIL import Image
from torchvision.transforms import v2

from gmmvit.data import authors_ops, batched, resident
from gmmvit.nn import kernels
from gmmvit.run import compiling
from gmmvit.nn.attention import MaskedAttention
from gmmvit.data.sampling import RepeatedPassSampler
from gmmvit.data.transforms import build_transforms
from gmmvit.nn.masks import ElementwiseLearnableMask, GaussianMixtureMask

import torch.nn.attention.flex_attention as flex_module

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def _flex_forward_or_skip(fn):
    """Run ``fn``; skip (with the reason) where this torch cannot run FlexAttention on CPU."""
    if not kernels.flex_available():
        pytest.skip("torch.nn.attention.flex_attention is not in this torch")
    try:
        return fn()
    except (NotImplementedError, RuntimeError) as exc:
        text = str(exc).lower()
        if isinstance(exc, RuntimeError) and not any(w in text for w in ("dynamo", "compile", "support")):
            raise
        pytest.skip(f"FlexAttention does not run on CPU here: {type(exc).__name__}: {str(exc)[:200]}")


def _qkv(*shape, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).requires_grad_(requires_grad) for _ in range(3)]


def _gmm(heads, grid, prefix=0, combine="mul", seed=0):
    torch.manual_seed(seed)
    return GaussianMixtureMask(num_heads=heads, grid_size=grid, num_prefix_tokens=prefix, combine=combine)


# --- which path runs --------------------------------------------------------------------------------

def test_use_flex_only_for_the_mul_mask_and_only_on_cuda_by_default():
    q = torch.zeros(2, 3, 64, 16)
    gmm, gmm_add = _gmm(3, 8), _gmm(3, 8, combine="add")
    assert not kernels.use_flex(q, gmm)                       # auto: CPU keeps the explicit path
    assert kernels.use_flex(q, gmm, mode="flex")
    assert not kernels.use_flex(q, gmm_add, mode="flex")      # SDPA already fuses additive masks
    assert not kernels.use_flex(q, MaskedAttention(48, 3).mask, mode="flex")  # no mask: SDPA
    assert not kernels.use_flex(q, gmm, dropout=0.1, mode="flex")  # flex has no attention dropout
    assert not kernels.use_flex(q, gmm, mode="explicit")
    with pytest.raises(ValueError):
        kernels.check_attention("fused")


# --- FlexAttention == explicit ------------------------------------------------------------------------

@pytest.mark.parametrize("heads,grid,prefix,shared", [(12, 8, 0, False),   # ViT-GMM
                                                      (4, 8, 1, False),    # PiT-like: class token prefix
                                                      (3, 4, 0, True)])    # ELM: one mask for all heads
def test_flex_forward_equals_explicit(heads, grid, prefix, shared):
    n = grid * grid + prefix
    q, k, v = _qkv(2, heads, n, 16)
    if shared:
        mask = ElementwiseLearnableMask(heads, grid, prefix)
        with torch.no_grad():
            mask.weight.normal_()
    else:
        mask = _gmm(heads, grid, prefix)
    scale = 16 ** -0.5
    with torch.no_grad():
        m = mask.full()
        expected = kernels.explicit_masked_attention(q, k, v, m, scale)
        out = _flex_forward_or_skip(lambda: kernels.flex_masked_attention(q, k, v, m, scale))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_flex_forward_with_swin_bias_on_five_dim_inputs():
    """Swin: q is [B, windows, heads, N, d]; the bias [windows, heads, N, N] broadcasts over B."""
    b, nw, heads, n, d = 2, 4, 3, 16, 8
    q, k, v = _qkv(b, nw, heads, n, d)
    mask = _gmm(heads, 4)
    bias = torch.randn(nw, heads, n, n)
    with torch.no_grad():
        m = mask.full()
        expected = kernels.explicit_masked_attention(q, k, v, m, d ** -0.5, bias)
        out = _flex_forward_or_skip(lambda: kernels.flex_masked_attention(q, k, v, m, d ** -0.5, bias))
        # a head-shared bias broadcasting over windows too
        bias1 = torch.randn(1, heads, n, n)
        expected1 = kernels.explicit_masked_attention(q, k, v, m, d ** -0.5, bias1)
        out1 = kernels.flex_masked_attention(q, k, v, m, d ** -0.5, bias1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out1, expected1, rtol=1e-4, atol=1e-5)


def test_flex_gradients_equal_explicit(monkeypatch):
    """Gradients w.r.t. q, k, v, sigma, alpha through flex's score_mod equal the explicit path's.

    torch's front end refuses backward on CPU (no fused CPU backward kernel); the unfused
    reference implementation it would run is device-agnostic, so the check is lifted here to
    test the score_mod's gradient semantics (on CUDA, tests/gpu_check.py checks the real kernel).
    """
    monkeypatch.setattr(flex_module, "_validate_device", lambda *a: None)
    heads, grid, d = 4, 4, 16
    mask = _gmm(heads, grid, prefix=1)
    q, k, v = _qkv(2, heads, grid * grid + 1, d, requires_grad=True)
    grad_out = torch.randn(2, heads, grid * grid + 1, d, generator=torch.Generator().manual_seed(3))
    inputs = [q, k, v, mask.sigma, mask.alpha]

    expected = kernels.explicit_masked_attention(q, k, v, mask.full(), d ** -0.5)
    g_expected = torch.autograd.grad(expected, inputs, grad_out)
    out = _flex_forward_or_skip(lambda: kernels.flex_masked_attention(q, k, v, mask.full(), d ** -0.5))
    g_flex = torch.autograd.grad(out, inputs, grad_out)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for name, a, b in zip(["q", "k", "v", "sigma", "alpha"], g_flex, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=lambda m: f"d/d{name}: {m}")


def test_masked_attention_module_flex_equals_explicit():
    """The wiring: MaskedAttention.attend takes the flex path when the mode asks for it."""
    torch.manual_seed(0)
    attn = MaskedAttention(48, num_heads=3, mask=_gmm(3, 4)).eval()
    x = torch.randn(2, 16, 48)
    calls = []
    real = kernels.flex_masked_attention
    with torch.no_grad():
        attn.attention = "explicit"
        expected = attn(x)
        attn.attention = "flex"
        fast_fn = lambda *a, **kw: calls.append(1) or real(*a, **kw)  # noqa: E731
        try:
            kernels.flex_masked_attention = fast_fn
            out = _flex_forward_or_skip(lambda: attn(x))
        finally:
            kernels.flex_masked_attention = real
    assert calls, "attend did not take the flex path"
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


# --- SDPA with the additive mask == explicit ---------------------------------------------------------

def test_sdpa_additive_mask_equals_explicit_forward_and_gradients():
    torch.manual_seed(0)
    heads, grid, d = 3, 4, 16
    attn = MaskedAttention(heads * d, num_heads=heads, mask=_gmm(heads, grid, prefix=1, combine="add"))
    n = grid * grid + 1
    q, k, v = _qkv(2, heads, n, d, requires_grad=True)
    bias = torch.randn(1, heads, n, n)
    m = attn.mask
    inputs = [q, k, v, m.sigma, m.alpha]
    grad_out = torch.randn(2, heads, n, d)

    out = attn.attend(q, k, v, bias)                                        # SDPA
    g_out = torch.autograd.grad(out, inputs, grad_out)
    scores = (q * attn.scale) @ k.transpose(-2, -1) + m.full() + bias       # explicit
    expected = scores.softmax(-1) @ v
    g_expected = torch.autograd.grad(expected, inputs, grad_out)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_out, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("combine", ["none", "add"])
def test_explicit_mode_runs_the_reference_path_for_every_mask_and_agrees_with_sdpa(combine, monkeypatch):
    torch.manual_seed(0)
    heads, grid, d = 3, 4, 16
    mask = None if combine == "none" else _gmm(heads, grid, prefix=1, combine="add")
    attn = MaskedAttention(heads * d, num_heads=heads, mask=mask)
    n = grid * grid + 1
    q, k, v = _qkv(2, heads, n, d)
    bias = torch.randn(1, heads, n, n)
    fused = attn.attend(q, k, v, bias)
    attn.attention = "explicit"
    sdpa_calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **kw: sdpa_calls.append(1) or real_sdpa(*a, **kw))
    explicit = attn.attend(q, k, v, bias)
    assert not sdpa_calls, "attention=explicit must not take the fused kernel"
    torch.testing.assert_close(explicit, fused, rtol=1e-4, atol=1e-5)


# --- the GPU data pipeline, on CPU tensors -----------------------------------------------------------

def _cifar_like(compose_config, dataset="cifar10", **aug):
    cfg = compose_config([f"dataset={dataset}", "logger=none"])
    with open_dict(cfg):
        for key, value in aug.items():
            cfg.recipe.aug[key] = value
    return cfg.dataset, cfg.recipe


def _structured_images(n, size=32, channels=3, seed=0):
    """Images with per-image brightness and contrast (so AutoAugment's ops change the statistics)."""
    rng = np.random.RandomState(seed)
    base = rng.uniform(40, 215, size=(n, 1, 1, 1))
    spread = rng.uniform(5, 60, size=(n, 1, 1, 1))
    img = base + spread * rng.randn(n, size, size, channels)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_batch_pipeline_without_augmentation_is_exact_normalisation(compose_config):
    ds, recipe = _cifar_like(compose_config, hflip=False, crop_padding=0, autoaugment=False,
                             random_erasing=0.0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = batched.BatchAugment(ds, recipe.aug)(x)
    mean = torch.tensor(list(ds.mean))[:, None, None]
    std = torch.tensor(list(ds.std))[:, None, None]
    assert out.dtype == torch.float32 and out.shape == (16, 3, 32, 32)
    torch.testing.assert_close(out, (x.float() / 255 - mean) / std)


@pytest.mark.parametrize("dataset", ["cifar10", "fashion_mnist"])  # as is; padded from 28 to 32 px
def test_gpu_test_batches_equal_the_per_image_test_pipeline_in_order(compose_config, dataset):
    ds, recipe = _cifar_like(compose_config, dataset)
    arrays = _structured_images(37, ds.native_size, ds.channels)
    arrays = arrays[..., 0] if ds.channels == 1 else arrays

    class Split:
        data, targets = arrays, list(range(37))

        def __len__(self):
            return 37

    loader = resident.GpuTestBatches.from_split(Split(), ds, 16, torch.device("cpu"))
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(y) for _, y in batches] == [16, 16, 5]
    transform = build_transforms(ds, recipe.aug, train=False)
    mode = "RGB" if ds.channels == 3 else "L"
    expected = torch.stack([transform(Image.fromarray(a, mode=mode)) for a in arrays])
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), expected)
    assert torch.cat([y for _, y in batches]).tolist() == list(range(37))


def test_crop_and_flip_are_per_image_shifts_of_the_padded_image(compose_config):
    ds, recipe = _cifar_like(compose_config)
    augment = batched.BatchAugment(ds, recipe.aug)
    torch.manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)  # no zeros: padding is visible
    out = augment.crop(x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets = set()
    for b in range(64):
        found = [(i, j) for i in range(9) for j in range(9)
                 if torch.equal(out[b], padded[b, :, i:i + 32, j:j + 32])]
        assert found, f"image {b} is not a 32x32 window of its padded image"
        offsets.add(found[0])
    assert len(offsets) > 10  # offsets differ between images
    flipped = augment.flip(x)
    same = [torch.equal(flipped[b], x[b]) for b in range(64)]
    mirrored = [torch.equal(flipped[b], x[b].flip(-1)) for b in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54


@pytest.mark.parametrize("ops", ["authors", "torchvision"])
def test_random_erasing_rate_area_and_fill(compose_config, ops):
    ds, recipe = _cifar_like(compose_config, ops=ops)
    augment = batched.BatchAugment(ds, recipe.aug)
    torch.manual_seed(0)
    x = torch.randn(2000, 3, 32, 32) * 10 + 100   # never equal to the fill value
    out = augment.erase(x)
    erased = (out != x).any(1)                     # [B, H, W]
    rate = erased.any(-1).any(-1).float().mean().item()
    assert 0.2 < rate < 0.3                        # p = 0.25
    area = erased.float().mean((1, 2))[erased.any(-1).any(-1)]
    assert area.min() >= 0.015 and area.max() <= 0.42
    fill = out.permute(0, 2, 3, 1)[erased]
    torch.testing.assert_close(fill, torch.tensor(list(ds.mean)).expand_as(fill))


@pytest.mark.parametrize("mode,ops", [("sample", "authors"), ("sample", "torchvision"), ("batch", "torchvision")])
def test_batch_pipeline_shapes_and_statistics_match_the_per_image_pipeline(compose_config, mode, ops):
    """Full paper recipe: the batched tensor pipeline and the per-image PIL pipeline of the same
    ``recipe.aug.ops`` give outputs of the same shape, dtype and (per channel) mean and spread on
    the same images."""
    ds, recipe = _cifar_like(compose_config, ops=ops)
    arrays = _structured_images(512)
    torch.manual_seed(0)
    transform = build_transforms(ds, recipe.aug, train=True)
    ref = torch.stack([transform(Image.fromarray(a)) for a in arrays])
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    augment = batched.BatchAugment(ds, recipe.aug, autoaugment=mode)
    out = torch.cat([augment(part) for part in x.split(128)])
    assert out.shape == ref.shape == (512, 3, 32, 32) and out.dtype == ref.dtype == torch.float32
    assert torch.isfinite(out).all()
    # one AutoAugment sub-policy per 16-image chunk ("batch", torchvision v2) is far noisier over
    # 512 images than one per image: only the faithful mode is held to the tight tolerance
    tol = 0.06 if mode == "sample" else 0.35
    torch.testing.assert_close(out.mean((0, 2, 3)), ref.mean((0, 2, 3)), atol=tol, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3)), ref.std((0, 2, 3)), atol=0, rtol=tol)
    # and not the identity: augmentation changed most images
    plain = (x.float() / 255 - torch.tensor(list(ds.mean))[:, None, None]) / torch.tensor(list(ds.std))[:, None, None]
    assert ((out - plain).abs().amax((1, 2, 3)) > 1e-3).float().mean() > 0.8


@pytest.mark.parametrize("dataset", ["fashion_mnist", "digits", "svhn"])
def test_batch_pipeline_other_datasets(compose_config, dataset):
    """Grey 28px (padded to 32) and 8px (resized to 32) images, SVHN's policy: right shapes."""
    ds, recipe = _cifar_like(compose_config, dataset)
    arrays = _structured_images(40, ds.native_size, ds.channels)[..., 0] if ds.channels == 1 else \
        _structured_images(40, ds.native_size, ds.channels)

    class Split:
        data, targets = arrays, list(range(40))

        def __len__(self):
            return 40

    images, targets = batched.split_arrays(Split())
    assert images.shape == (40, ds.channels, ds.native_size, ds.native_size) and images.dtype == torch.uint8
    images = batched.to_model_size(images, ds)
    assert images.shape == (40, ds.channels, ds.img_size, ds.img_size)
    out = batched.BatchAugment(ds, recipe.aug)(images)
    assert out.shape == (40, ds.channels, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def _reference_op(ops: str, h: int, w: int):
    """(name -> (magnitudes, signed), apply(img, name, magnitude)): torchvision's v2 AutoAugment's own
    table and op, or the authors' ops (each checked against their PIL op in test_authors_ops)."""
    if ops == "torchvision":
        v2aa = v2.AutoAugment()
        space = {name: (fn(10, h, w), signed and fn(10, h, w) is not None)
                 for name, (fn, signed) in v2aa._AUGMENTATION_SPACE.items()}
        return space, lambda img, name, m: v2aa._apply_image_or_video_transform(
            img, name, m, interpolation=v2aa.interpolation, fill=v2aa._fill)
    space = {name: (op.levels(h, w), op.signed) for name, op in authors_ops.AUTHORS_OPS.items()}
    return space, lambda img, name, m: authors_ops.AUTHORS_OPS[name].tensor(img, m)


@pytest.mark.parametrize("ops", ["authors", "torchvision"])
def test_batched_autoaugment_gives_each_image_exactly_its_own_draw(ops):
    """Grouping images by (op, magnitude) is only an implementation: the batch equals transforming
    each image alone with the sub-policy, coins and signs it drew, drawn in this order (torchvision's
    is the batched path's order from before recipe.aug.ops, so its images are the same as then)."""
    aa = authors_ops.batch_autoaugment("cifar10", ops)
    images = torch.from_numpy(_structured_images(64)).permute(0, 3, 1, 2).contiguous()
    b, (h, w) = images.shape[0], images.shape[-2:]
    space, apply = _reference_op(ops, h, w)
    torch.manual_seed(3)
    batch = aa(images)
    torch.manual_seed(3)                                   # the same draws, in the call's order
    choice = torch.randint(len(aa.policies), (b,)).tolist()
    draws = [(torch.rand(b).tolist(), torch.rand(b).tolist()) for _ in range(2)]
    for i in range(b):
        img = images[i:i + 1]
        for stage, (coin, sign) in enumerate(draws):
            op, probability, magnitude_idx = aa.policies[choice[i]][stage]
            if not coin[i] < probability:
                continue
            magnitudes, signed = space[op]
            magnitude = 0.0 if magnitudes is None else float(magnitudes[magnitude_idx or 0])
            if signed and sign[i] <= 0.5:
                magnitude = -magnitude
            img = apply(img, op, magnitude)
        assert torch.equal(batch[i:i + 1], img), f"image {i}"


@pytest.mark.parametrize("batches_per_call", [2, None])  # several calls; one call (IMAGES_PER_CALL)
def test_gpu_batches_follow_the_sampler_order(compose_config, batches_per_call):
    ds, recipe = _cifar_like(compose_config)
    with open_dict(recipe):
        recipe.batch_size = 16
    arrays = _structured_images(50)
    targets = list(range(50))

    class Split:
        data = arrays

        def __len__(self):
            return 50

    Split.targets = targets
    sampler = RepeatedPassSampler(50, passes=3, seed=0)
    loader = resident.GpuBatches.from_split(torch.utils.data.Subset(Split(), list(range(50))), ds, recipe,
                                            torch.device("cpu"), sampler)
    loader.batches_per_call = batches_per_call or loader.batches_per_call
    assert len(loader) == 150 // 16
    sampler.set_epoch(2)
    order = list(iter(sampler))
    got = []
    for images, y in loader:
        assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32 and y.dtype == torch.long
        got += y.tolist()
    assert got == order[:len(got)] and len(got) == 9 * 16


def test_data_on_gpu_setting():
    ds = OmegaConf.create({"channels": 3, "img_size": 32})
    assert not resident.wanted("auto", torch.device("cpu"), 50_000, ds)
    assert resident.wanted("true", torch.device("cpu"), 50_000, ds)
    assert not resident.wanted(False, torch.device("cpu"), 50_000, ds)
    with pytest.raises(ValueError):
        resident.wanted("maybe", torch.device("cpu"), 1, ds)


def test_train_runs_on_the_device_resident_loader(compose_config, tmp_path):
    """train() with data_on_gpu=true (here on CPU tensors): the wiring in train.py, end to end."""
    from gmmvit.run.train import train

    cfg = compose_config(["model=vit", "mask=gmm", "dataset=cifar10", "logger=none", "device=cpu",
                          "data_on_gpu=true", "threads=2", "model.embed_dim=24", "model.depth=1",
                          "model.num_heads=2", "recipe.epochs=1", "recipe.passes_per_epoch=1",
                          "recipe.batch_size=16", "recipe.warmup_epochs=0"], run_dir=tmp_path / "run")
    with open_dict(cfg):
        cfg.dataset.source = {"_target_": "gmmvit.bench.epoch.synthetic_split", "n_train": 64, "n_test": 32}
    data = train(cfg)
    assert data["status"] == "finished", data
    (row,) = data["history"]
    assert math.isfinite(row["train_loss"]) and row["img_per_s"] > 0


# --- torch.compile and the optimizer ------------------------------------------------------------

@pytest.mark.parametrize("setting, device, mode", [
    ("auto", "cpu", None), ("auto", "cuda", "default"), (None, "cuda", "default"),
    (True, "cpu", "default"), (False, "cuda", None), ("reduce-overhead", "cuda", "reduce-overhead"),
    ("max-autotune", "cpu", "max-autotune"),
])
def test_compile_setting_is_eager_on_cpu_and_compiled_on_cuda_unless_chosen(setting, device, mode):
    assert compiling.compile_setting(setting, torch.device(device)) == mode


def test_unknown_compile_setting_is_a_config_error_naming_the_choices():
    from gmmvit.errors import ConfigError

    with pytest.raises(ConfigError, match="reduce-overhead"):
        compiling.compile_setting("fastest", torch.device("cpu"))


def test_optimizer_keeps_the_configured_kernel_choice_on_cpu(compose_config):
    from gmmvit.run.recipe import build_optimizer

    model = torch.nn.Linear(4, 2)
    cfg = compose_config(["logger=none"])
    assert not build_optimizer(cfg.recipe, model).defaults.get("fused")
    with open_dict(cfg):
        cfg.recipe.optimizer.foreach = False
    assert build_optimizer(cfg.recipe, model).defaults["foreach"] is False


@pytest.mark.slow
def test_train_runs_compiled(compose_config, tmp_path):
    """compile=true goes through torch.compile (inductor's C++ backend here): ~1 minute on 2 cores."""
    from gmmvit.run.train import train

    cfg = compose_config(["model=vit", "mask=gmm", "dataset=digits", "logger=none", "device=cpu",
                          "compile=true", "threads=2", "model.embed_dim=24", "model.depth=1",
                          "model.num_heads=2", "recipe.epochs=1", "recipe.passes_per_epoch=1",
                          "recipe.batch_size=32", "recipe.warmup_epochs=0", "limit_train=128",
                          "limit_test=64"], run_dir=tmp_path / "run")
    data = train(cfg)
    assert data["status"] == "finished", data
    assert math.isfinite(data["history"][0]["train_loss"])
