"""The authors' augmentation ops (gmmvit.data.authors_ops) against their definitions.

Their code (CatworldLee/Gaussian-Mixture-Mask-Attention): utils/transforms.py (the ops, on PIL images),
utils/autoaug.py (magnitude ranges ``SubPolicy.ranges``, the three policies), utils/random_erasing.py.
Each reference below is written here from their formula with PIL / numpy, not from the module.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from gmmvit.data import authors_ops as aa

GREY = (128, 128, 128)
SIGMAS = 4.0

# their SubPolicy.ranges (autoaug.py): level -> magnitude
RANGES = {
    "ShearX": np.linspace(0, 0.3, 10), "ShearY": np.linspace(0, 0.3, 10),
    "TranslateX": np.linspace(0, 150 / 331, 10), "TranslateY": np.linspace(0, 150 / 331, 10),
    "Rotate": np.linspace(0, 30, 10), "Color": np.linspace(0.0, 0.9, 10),
    "Posterize": np.round(np.linspace(8, 4, 10), 0).astype(int), "Solarize": np.linspace(256, 0, 10),
    "Contrast": np.linspace(0.0, 0.9, 10), "Sharpness": np.linspace(0.0, 0.9, 10),
    "Brightness": np.linspace(0.0, 0.9, 10),
    "AutoContrast": [0] * 10, "Equalize": [0] * 10, "Invert": [0] * 10,
}
# their transforms.py: the ops drawing random.choice([-1, 1]) (Rotate does not)
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Contrast", "Sharpness", "Brightness"}
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def reference(name: str, img: Image.Image, m, sign: int = 1) -> Image.Image:
    """The authors' op (transforms.py) at magnitude ``m`` with the sign their random.choice drew."""
    w, h = img.size
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, m * sign, 0, 0, 1, 0), Image.BICUBIC, fillcolor=GREY)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, m * sign, 1, 0), Image.BICUBIC, fillcolor=GREY)
    if name == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, m * w * sign, 0, 1, 0), fillcolor=GREY)
    if name == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, m * h * sign), fillcolor=GREY)
    if name == "Rotate":
        rot = img.convert("RGBA").rotate(m)
        return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)
    enhance = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
               "Sharpness": ImageEnhance.Sharpness, "Brightness": ImageEnhance.Brightness}
    if name in enhance:
        return enhance[name](img).enhance(1 + m * sign)
    if name == "Posterize":
        return ImageOps.posterize(img, int(m))
    if name == "Solarize":
        return ImageOps.solarize(img, m)
    return {"AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize, "Invert": ImageOps.invert}[name](img)


def synthetic_images(n: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3]: gradients, checkerboards, smooth noise, each image its own range."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for k in range(n):
        coarse = rng.rand(3, 5, 5)
        smooth = np.stack([np.asarray(Image.fromarray((c * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))
                           for c in coarse], -1) / 255.0
        checker = ((np.floor(yy * size / (2 + k % 3)) + np.floor(xx * size / (2 + k % 3))) % 2)[..., None]
        grad = np.stack([xx, yy, 1 - xx * yy], -1)
        mix = 0.4 * smooth + 0.3 * grad + 0.2 * checker + 0.1 * rng.rand(size, size, 3)
        lo, hi = rng.uniform(0, 60), rng.uniform(180, 255)
        out.append((lo + (hi - lo) * mix).round().clip(0, 255).astype(np.uint8))
    return np.stack(out)


def no_grey_images(n: int, size: int = 32, seed: int = 1) -> np.ndarray:
    """Images with G = R + 40 everywhere: none holds a grey (r = g = b) pixel."""
    rng = np.random.RandomState(seed)
    base = synthetic_images(n, size, seed)[..., 0].astype(int) * 150 // 255 + rng.randint(0, 20, (n, 1, 1))
    return np.stack([base, base + 40, base + 80], -1).clip(0, 255).astype(np.uint8)


IMAGES = synthetic_images()
PILS = [Image.fromarray(a) for a in IMAGES]
BATCH = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).contiguous()
CASES = [(name, level) for name in RANGES for level in range(10)]


def as_array(img) -> np.ndarray:
    return np.asarray(img, dtype=int)


def signs(name: str):
    return (1, -1) if name in SIGNED else (1,)


def magnitude(name: str, level: int):
    return aa.AUTHORS_OPS[name].levels(32, 32)[level]


# --- each op, each level, against the authors' definition --------------------------------------

@pytest.mark.parametrize("name", list(RANGES))
def test_magnitude_table_is_the_authors(name):
    np.testing.assert_allclose(aa.AUTHORS_OPS[name].levels(32, 32), np.asarray(RANGES[name], dtype=float))


@pytest.mark.parametrize("name", list(RANGES))
def test_random_sign_only_where_the_authors_draw_one(name):
    assert aa.AUTHORS_OPS[name].signed == (name in SIGNED)


@pytest.mark.parametrize("name,level", CASES)
def test_per_image_op_matches_the_authors_within_one_level(name, level):
    m = magnitude(name, level)
    for sign in signs(name):
        for img in PILS:
            ours = aa.AUTHORS_OPS[name].pil(img, sign * m if name in SIGNED else m)
            assert ours.mode == img.mode and ours.size == img.size
            assert np.abs(as_array(ours) - as_array(reference(name, img, m, sign))).max() <= 1, (name, level, sign)


@pytest.mark.parametrize("name,level", CASES)
def test_batched_op_matches_the_authors_within_one_level(name, level):
    m = magnitude(name, level)
    for sign in signs(name):
        ours = aa.AUTHORS_OPS[name].tensor(BATCH.clone(), sign * m if name in SIGNED else m)
        assert ours.dtype == torch.uint8 and ours.shape == BATCH.shape
        ref = np.stack([as_array(reference(name, img, m, sign)) for img in PILS])
        assert np.abs(ours.permute(0, 2, 3, 1).numpy().astype(int) - ref).max() <= 1, (name, level, sign)


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_geometric_ops_fill_grey_never_black(name):
    img = Image.fromarray(no_grey_images(1)[0])
    for out in (as_array(aa.AUTHORS_OPS[name].pil(img, magnitude(name, 9))),
                aa.AUTHORS_OPS[name].tensor(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None], magnitude(name, 9))
                [0].permute(1, 2, 0).numpy().astype(int)):
        grey = (out == 128).all(-1)
        assert grey.mean() > 0.02
        assert not (out == 0).all(-1).any()


def test_translate_is_fractional():
    """Level 9 at 32 px shifts by 150/331 * 32 = 14.50 px: a 14.5 px shift moves pixel centres by 15 (PIL's
    nearest from the centre x + 0.5 + 14.50), torchvision's int() by 14."""
    ramp = np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 4, (32, 1, 3))
    out = as_array(aa.AUTHORS_OPS["TranslateX"].pil(Image.fromarray(ramp), magnitude("TranslateX", 9)))
    assert (out[:, 0, 0] == ramp[0, 15, 0]).all()


def test_rotate_is_counter_clockwise():
    img = np.zeros((32, 32, 3), np.uint8)
    img[2:6, 14:18] = 255                                  # a block above the centre
    out = as_array(aa.AUTHORS_OPS["Rotate"].pil(Image.fromarray(img), 30.0))
    ys, xs = np.nonzero((out == 255).all(-1))
    assert xs.mean() < 16 - 3                              # moved left: counter-clockwise on screen


def test_solarize_level_zero_keeps_255():
    img = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert (aa.AUTHORS_OPS["Solarize"].tensor(img, 256.0) == 255).all()
    assert (as_array(aa.AUTHORS_OPS["Solarize"].pil(Image.new("RGB", (4, 4), (255,) * 3), 256.0)) == 255).all()


def test_policy_tables_are_the_authors():
    """Spot checks against autoaug.py: first and last sub-policy of each (the module uses torchvision's tables)."""
    first_last = {"cifar10": ((("Invert", 0.1), ("Contrast", 0.2, 6)), (("TranslateY", 0.7, 9), ("AutoContrast", 0.9))),
                  "svhn": ((("ShearX", 0.9, 4), ("Invert", 0.2)), (("ShearX", 0.7, 2), ("Invert", 0.1))),
                  "imagenet": ((("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Equalize", 0.8), ("Equalize", 0.6)))}
    for policy, (first, last) in first_last.items():
        table = aa.policy_table(policy)
        assert len(table) == 25
        for got, want in ((table[0], first), (table[-1], last)):
            assert [tuple(x for x in op if x is not None) for op in got] == [tuple(w) for w in want]


def test_ops_selector():
    from torchvision import transforms
    assert isinstance(aa.per_image_autoaugment("cifar10", "torchvision"), transforms.AutoAugment)
    assert isinstance(aa.per_image_autoaugment("cifar10"), aa.AutoAugment)
    assert isinstance(aa.per_image_erasing(0.25, ops="torchvision"), transforms.RandomErasing)
    assert isinstance(aa.per_image_erasing(0.25), aa.RandomErasing)
    assert aa.batch_erasing(0.25).attempts == 100 and aa.batch_erasing(0.25, ops="torchvision").attempts == 10
    with pytest.raises(ValueError):
        aa.batch_autoaugment("cifar10", "timm")


# --- the whole AutoAugment, in distribution -----------------------------------------------------

N_AA = 2000


def recorded_per_image(policy: str, images: np.ndarray, seed: int = 0):
    """(outputs uint8 [N, H, W, 3], per image the (op, magnitude) applied) of the per-image transform."""
    t = aa.AutoAugment(policy)
    log: list = []

    def wrap(name, op):
        def pil(img, m):
            log.append((name, m))
            return op.pil(img, m)
        return aa.Op(op.levels, op.signed, pil, op.tensor)
    t.ops = {name: wrap(name, op) for name, op in t.ops.items()}
    torch.manual_seed(seed)
    outs, applied = [], []
    for a in images:
        log.clear()
        outs.append(np.asarray(t(Image.fromarray(a))))
        applied.append(list(log))
    return np.stack(outs), applied


def recorded_batched(policy: str, images: np.ndarray, seed: int = 0):
    """The same for the batched transform: per image the (op, magnitude) of each stage it applied."""
    t = aa.BatchAutoAugment(policy)
    drawn: list = []
    draw = t.draw
    t.draw = lambda b, h, w: drawn.extend(draw(b, h, w)) or drawn
    torch.manual_seed(seed)
    out = t(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    tables = t.stage_tables(*images.shape[1:3])
    applied = [[tables[s]["keys"][k] for s, k in enumerate(keys) if k >= 0] for keys in zip(*drawn)]
    return out.permute(0, 2, 3, 1).numpy(), applied


@pytest.fixture(scope="module")
def runs():
    images = np.concatenate([synthetic_images(N_AA // 8, seed=s) for s in range(8)])
    return {(policy, path): fn(policy, images, seed=3)
            for policy in ("cifar10", "svhn")
            for path, fn in (("per_image", recorded_per_image), ("batched", recorded_batched))}


def expected_applications(policy: str) -> dict[str, tuple[float, float]]:
    """Per op: mean and variance of its number of applications to one image (uniform sub-policy,
    independent coins)."""
    table = aa.policy_table(policy)
    out = {}
    for name in RANGES:
        q = [[p if op == name else 0.0 for op, p, _ in sub] for sub in table]
        mean = np.mean([a + b for a, b in q])
        second = np.mean([a + b + 2 * a * b for a, b in q])
        out[name] = (mean, second - mean ** 2)
    return out


@pytest.mark.parametrize("path", ["per_image", "batched"])
@pytest.mark.parametrize("policy", ["cifar10", "svhn"])
def test_each_op_applied_at_the_policy_rate(runs, policy, path):
    _, applied = runs[(policy, path)]
    for name, (mean, var) in expected_applications(policy).items():
        counts = np.array([sum(op == name for op, _ in ops) for ops in applied])
        assert abs(counts.mean() - mean) <= SIGMAS * math.sqrt(var / len(counts)) + 1e-12, name


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_rotation_always_positive_other_signs_even(runs, path):
    _, applied = runs[("cifar10", path)]
    flat = [(op, m) for ops in applied for op, m in ops]
    rotations = [m for op, m in flat if op == "Rotate"]
    assert len(rotations) > 20 and min(rotations) > 0
    signed = [m for op, m in flat if op in SIGNED and m != 0]
    share = np.mean(np.array(signed) < 0)
    assert abs(share - 0.5) <= SIGMAS * math.sqrt(0.25 / len(signed))


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_grey_fill_where_a_geometric_op_applies_last(path):
    images = no_grey_images(400, seed=5)
    outputs, applied = (recorded_per_image if path == "per_image" else recorded_batched)("svhn", images, seed=4)
    last_geometric = [i for i, ops in enumerate(applied) if ops and ops[-1][0] in GEOMETRIC and ops[-1][1] != 0]
    assert len(last_geometric) > 50
    grey = (outputs[last_geometric] == 128).all(-1)
    assert grey.any(axis=(1, 2)).all() and grey.mean() > 0.01
    untouched = [i for i, ops in enumerate(applied) if not ops]
    assert not (outputs[untouched] == 128).all(-1).any()


def test_per_image_and_batched_agree_in_distribution(runs):
    for policy in ("cifar10", "svhn"):
        (out_a, app_a), (out_b, app_b) = runs[(policy, "per_image")], runs[(policy, "batched")]
        for name in RANGES:                                   # application counts, two-sample
            ca = np.array([sum(op == name for op, _ in ops) for ops in app_a])
            cb = np.array([sum(op == name for op, _ in ops) for ops in app_b])
            se = math.sqrt((ca.var() + cb.var()) / len(ca)) or 1e-9
            assert abs(ca.mean() - cb.mean()) <= SIGMAS * se + 1e-12, (policy, name)
        ma, mb = out_a.reshape(len(out_a), -1, 3).mean(1), out_b.reshape(len(out_b), -1, 3).mean(1)
        se = np.sqrt((ma.var(0) + mb.var(0)) / len(ma))   # per-channel image means, two-sample
        assert (np.abs(ma.mean(0) - mb.mean(0)) <= SIGMAS * se).all(), policy


# --- random erasing ---------------------------------------------------------------------------------

N_ERASE = 2000
N_FLIP = 2000


@functools.lru_cache(maxsize=None)                     # 50,000 x 100 draws: once per session
def authors_boxes(n: int, h: int = 32, w: int = 32, sl=0.02, sh=0.4, r1=0.3, seed: int = 0):
    """Their RandomErasing's accepted box (h, w), by their formula in numpy: uniform area and aspect,
    rounded sides, the first of 100 attempts with h < H and w < W."""
    rng = np.random.RandomState(seed)
    area = rng.uniform(sl, sh, (n, 100)) * h * w
    aspect = rng.uniform(r1, 1 / r1, (n, 100))
    bh, bw = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    first = ((bw < w) & (bh < h)).argmax(1)
    return bh[np.arange(n), first], bw[np.arange(n), first]


def measured_boxes(erased: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(heights, widths) of the boxes erased into zero images (value 1), 0 where none."""
    mask = (erased[:, 0] != 0).numpy()
    return mask.any(2).sum(1), mask.any(1).sum(1)


@pytest.fixture(scope="module")
def erased():
    value = (1.0, 1.0, 1.0)
    torch.manual_seed(0)
    per_image = torch.stack([aa.RandomErasing(1.0, value=value)(torch.zeros(3, 32, 32)) for _ in range(N_ERASE)])
    batched = aa.batch_erasing(1.0, value=value)(torch.zeros(N_ERASE, 3, 32, 32))
    return {"per_image": measured_boxes(per_image), "batched": measured_boxes(batched)}


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_erased_box_aspect_is_the_authors(erased, path):
    h, w = erased[path]
    rh, rw = authors_boxes(50_000)
    want = np.mean(rh > rw)                                # about 0.75: uniform aspect in [0.3, 3.33]
    assert 0.7 < want < 0.8
    assert abs(np.mean(h > w) - want) <= SIGMAS * math.sqrt(want * (1 - want) / len(h))


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_erased_box_area_is_the_authors(erased, path):
    h, w = erased[path]
    ref = authors_boxes(50_000)
    ref_area = ref[0] * ref[1]
    assert (h > 0).all() and (h < 32).all() and (w < 32).all()
    assert abs((h * w).mean() - ref_area.mean()) <= SIGMAS * ref_area.std() / math.sqrt(len(h))


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_erasing_probability_and_fill(path):
    mean = (0.4914, 0.4822, 0.4465)
    torch.manual_seed(1)
    x = torch.full((N_ERASE, 3, 32, 32), -5.0)
    if path == "per_image":
        out = torch.stack([aa.RandomErasing(0.25, value=mean)(img) for img in x])
    else:
        out = aa.batch_erasing(0.25, value=mean)(x)
    hit = (out != -5.0).any(3).any(2).any(1).numpy()
    assert abs(hit.mean() - 0.25) <= SIGMAS * math.sqrt(0.25 * 0.75 / N_ERASE)
    filled = out[hit][:, :, :, :].permute(1, 0, 2, 3).reshape(3, -1)
    for c in range(3):
        values = filled[c][filled[c] != -5.0]
        assert torch.allclose(values, torch.tensor(mean[c]))


def test_torchvision_erasing_is_square_on_average_the_authors_taller():
    torch.manual_seed(2)
    h, w = measured_boxes(aa.batch_erasing(1.0, value=(1.0,) * 3, ops="torchvision")(torch.zeros(N_ERASE, 3, 32, 32)))
    assert abs(np.mean(h > w) - np.mean(w > h)) < 0.08


def test_per_image_and_batched_erasing_agree(erased):
    (ha, wa), (hb, wb) = erased["per_image"], erased["batched"]
    pa, pb = np.mean(ha > wa), np.mean(hb > wb)
    assert abs(pa - pb) <= SIGMAS * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / N_ERASE)
    aa_, ab = ha * wa, hb * wb
    assert abs(aa_.mean() - ab.mean()) <= SIGMAS * math.sqrt((aa_.var() + ab.var()) / N_ERASE)


# --- recipe.aug.ops reaches both paths ----------------------------------------------------------

def _svhn(compose_config, ops):
    cfg = compose_config(["dataset=svhn"] + ([] if ops is None else [f"recipe.aug.ops={ops}"]))
    return cfg.dataset, cfg.recipe.aug


def _autoaugment_of(path: str, ds, aug):
    """The AutoAugment step of that path's training pipeline, on uint8 [N, H, W, 3] -> the same."""
    from gmmvit.data.batched import BatchAugment
    from gmmvit.data.transforms import build_transforms
    if path == "per_image":
        step = build_transforms(ds, aug, train=True).transforms[2]            # after flip and crop
        return lambda a: np.stack([np.asarray(step(Image.fromarray(img))) for img in a])
    step = BatchAugment(ds, aug).auto_augment
    return lambda a: step(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1).numpy()


def _erasing_of(path: str, ds, aug):
    """The random erasing step of that path's training pipeline, on a float batch [N, 3, H, W]."""
    from gmmvit.data.batched import BatchAugment
    from gmmvit.data.transforms import build_transforms
    if path == "per_image":
        step = build_transforms(ds, aug, train=True).transforms[-1]
        return lambda x: torch.stack([step(img) for img in x])
    return BatchAugment(ds, aug).erase


@pytest.mark.parametrize("path", ["per_image", "batched"])
@pytest.mark.parametrize("ops", [None, "authors", "torchvision"])       # None: the recipe's default
def test_the_key_chooses_the_fill_of_both_paths_autoaugment(compose_config, path, ops):
    """SVHN's policy fills a region grey (the authors') in about 63% of images; torchvision's black fill
    leaves only the few grey pixels per-channel ops (equalize, autocontrast) happen to make."""
    ds, aug = _svhn(compose_config, ops)
    torch.manual_seed(0)
    out = _autoaugment_of(path, ds, aug)(no_grey_images(200, seed=7))
    share = (out == 128).all(-1).any(axis=(1, 2)).mean()
    if ops == "torchvision":
        assert share < 0.05
    else:
        assert share > 0.4


@pytest.mark.parametrize("path", ["per_image", "batched"])
@pytest.mark.parametrize("ops", [None, "authors", "torchvision"])
def test_the_key_chooses_the_erased_box_aspect_of_both_paths(compose_config, path, ops):
    """The authors' uniform aspect makes about 75% of boxes taller than wide; torchvision's log-uniform
    aspect as many wider as taller."""
    ds, aug = _svhn(compose_config, ops)
    torch.manual_seed(0)
    x = torch.full((N_ERASE, 3, 32, 32), -5.0)                  # never the fill (the dataset mean)
    h, w = measured_boxes((_erasing_of(path, ds, aug)(x) != -5.0).float())
    erased = h > 0
    assert abs(erased.mean() - 0.25) <= SIGMAS * math.sqrt(0.25 * 0.75 / N_ERASE)
    taller, wider = np.mean(h[erased] > w[erased]), np.mean(h[erased] < w[erased])
    se = math.sqrt(0.25 / erased.sum())
    if ops == "torchvision":
        assert abs(taller - wider) <= 2 * SIGMAS * se
    else:
        rh, rw = authors_boxes(50_000)
        assert abs(taller - np.mean(rh > rw)) <= SIGMAS * se


def test_the_torchvision_option_is_the_per_image_pipeline_of_before_the_key(compose_config):
    from torchvision import transforms
    from gmmvit.data.transforms import build_transforms
    ds, aug = _svhn(compose_config, "torchvision")
    before = transforms.Compose([
        transforms.RandomHorizontalFlip(), transforms.RandomCrop(32, padding=4),
        transforms.AutoAugment(transforms.AutoAugmentPolicy.SVHN), transforms.ToTensor(),
        transforms.Normalize(list(ds.mean), list(ds.std)),
        transforms.RandomErasing(p=0.25, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=list(ds.mean))])
    now = build_transforms(ds, aug, train=True)

    def outputs(pipeline):
        torch.manual_seed(1)
        return torch.stack([pipeline(img) for img in PILS * 8])
    assert torch.equal(outputs(before), outputs(now))


def position_images(n: int, seed: int = 3) -> np.ndarray:
    """uint8 [n, 32, 32, 3]: red = column + 1, green = row + 1 (so a pixel says where it came from), blue random."""
    rows, cols = np.mgrid[1:33, 1:33]
    blue = np.random.RandomState(seed).randint(1, 256, (n, 32, 32))
    return np.stack([np.broadcast_to(cols, (n, 32, 32)), np.broadcast_to(rows, (n, 32, 32)), blue], -1).astype(np.uint8)


def _flip_and_offsets(path: str, ds, aug, images: np.ndarray) -> np.ndarray:
    """Per image of ``position_images``, (flipped, top, left) of the window of its padded (and maybe
    flipped) image that the path's flip and crop took, read from the output's centre pixel."""
    from gmmvit.data.batched import BatchAugment
    from gmmvit.data.transforms import build_transforms
    if path == "per_image":
        t = build_transforms(ds, aug, train=True)
        out = torch.stack([t(Image.fromarray(a)) for a in images])
        out = (out * torch.tensor(list(ds.std))[:, None, None] + torch.tensor(list(ds.mean))[:, None, None]) * 255
        out = out.round().long()
    else:
        augment = BatchAugment(ds, aug)
        out = augment.crop(augment.flip(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())).long()
    column, row = out[:, 0, 16, 16] - 1, out[:, 1, 16, 16] - 1
    flipped = out[:, 0, 16, 17] < out[:, 0, 16, 16]
    column = torch.where(flipped, 31 - column, column)              # the column in the flipped image
    return torch.stack([flipped.long(), row - 16 + 4, column - 16 + 4], 1).numpy()


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_flip_rate_and_crop_offsets_of_both_paths(compose_config, path):
    cfg = compose_config(["dataset=cifar10", "recipe.aug.autoaugment=false", "recipe.aug.random_erasing=0"])
    torch.manual_seed(0)
    found = _flip_and_offsets(path, cfg.dataset, cfg.recipe.aug, position_images(N_FLIP))
    assert found[:, 1:].min() >= 0 and found[:, 1:].max() <= 8
    assert abs(found[:, 0].mean() - 0.5) <= SIGMAS * math.sqrt(0.25 / N_FLIP)
    for axis in (1, 2):                                       # top and left: uniform over the 9 offsets
        share = np.bincount(found[:, axis], minlength=9) / N_FLIP
        assert (np.abs(share - 1 / 9) <= SIGMAS * math.sqrt(1 / 9 * 8 / 9 / N_FLIP)).all(), share
