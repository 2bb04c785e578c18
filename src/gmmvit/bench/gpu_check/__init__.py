"""The GPU check (NOT a pytest file): one prepared run on a bare CUDA machine, under 8 minutes.

    PYTHONUNBUFFERED=1 PYTHONPATH=src python -m gmmvit.bench.gpu_check --fmnist DIR [--out gpu_check.md] [--budget 440]
    PYTHONPATH=src python -m gmmvit.bench.gpu_check --fmnist DIR --rehearse [--models vit]   # here, on the CPU

``--fmnist`` is a folder holding Debian's Fashion-MNIST files (``*-ubyte.gz``). On a bare machine
carry the wheels its image lacks (hydra-core, omegaconf, antlr4-python3-runtime, timm) and those
files; README "GPU figures" has the last results. In order:

A. (in parallel, ``--parallel`` at a time, most needed first) **accuracy pairs**: short real training runs
   through ``src/train.py`` on Fashion-MNIST (2 x 234 steps), each under named settings
   (``SETTINGS``: the defaults, ``step_graph=true``, every fast path off, ...), and one fused
   multirun (ViT-GMM, seeds 0, 1, 2 as one group) beside the same seeds unfused. The models of
   ``--warm`` (T2T, whose compile outran the last check's caps) are also compiled there once on
   CIFAR-sized data, so phase B finds their kernels in the inductor cache (``--warm all``: 23
   processes at once overran the cap on an H200).
B. (alone on the GPU, one after another) **end-to-end img/s** through ``train()`` for every model
   with none and gmm (CIFAR-sized synthetic uint8 data on the GPU, the paper's augmentation, batch
   128), the last of two epochs; ViT-GMM also under the other compile mode, and last PiT-GMM and
   ViT-GMM on the explicit attention path (``EXPLICIT_AGAINST_FLEX``: whether flex pays there). Every run is profiled
   (``profile_steps``) in its first epoch, and the **GMM overhead** table sets each model's gmm run
   beside its none run: img/s, device-busy ms and kernels per step, and, where the overhead misses
   the 5% target, the kernels that take the extra time.
   Beside them, one training step of Swin-GMM and ViT-GMM compiled against eager on the same weights
   and batch (``gmmvit.bench.compiled_grads``): whether a low compiled pair is the compiler's doing.
C. **packing**: 1, 2 and 4 ViT-GMM processes at once on the card; they meet on a barrier after their
   warm-up, then each trains a fixed number of steps; img/s = all their images over the common
   window (``gmmvit.bench.packing``), and whether MPS was running.
D. **estimates**: one 300-pass CIFAR-10 run per model, and the 60-run table's GPU-hours.
E. **fused runs**: every model, none and gmm, G = 1, 4, 16 members trained as one model
   (``gmmvit.bench.fused_rate``): img/s of all members, per member, peak memory; then groups
   mixing none and gmm members (each its own mask), G = 4 and 16; the forward compiled; G = 2, 8.

Every rate of B and E also shows as MFU (``gmmvit.bench.mfu``: 6 x the model's MACs per image over
the card's dense bf16 peak, by its name or ``--peak-tflops``), and the last lines name each model's
best. Figures go to ``--out`` (markdown) and beside it ``gpu_check.json``; each phase is capped so one
failure or a slow phase loses nothing else.

``--rehearse`` runs every phase on the CPU at a toy scale (``REHEARSAL``), with the settings only
CUDA has replaced (``on_cpu``): its figures mean nothing, but every call the GPU run makes is made,
so a mistake in the script costs minutes here, not a lent card's window. ``tests/test_gpu_check.py``
rehearses it for ViT.
"""
