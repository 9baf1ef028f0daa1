"""Data-parallel training on several GPUs (or CPU processes): ``torchrun`` + ``DistributedDataParallel``.

The DNW authors trained their ImageNet models on 4 GPUs (README of their public repository,
allenai/dnw: ``nn.DataParallel``, one process driving 4 GPUs). This module runs the repository's
:class:`~rewire.train.trainer.Trainer` on several devices, launched by PyTorch's own launcher
``torchrun`` (one process per device; no multiprocessing of our own) and synchronised by PyTorch's
``DistributedDataParallel`` (DDP), the multi-process successor PyTorch recommends over ``DataParallel``.

Commands
--------
One machine with 4 GPUs (``--standalone`` picks a free local rendezvous port)::

    torchrun --standalone --nproc_per_node 4 DRIVER.py ARGS

Two machines with 4 GPUs each; run the same line on both (HOST:PORT is a port that machine 1 can open
and machine 2 can reach; JOB any name shared by the two)::

    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:PORT --rdzv_id JOB DRIVER.py ARGS

``DRIVER.py`` is any script that follows the recipe below (``tools/ddp_equivalence.py`` does). The run
directory must be on a file system every machine sees: rank 0 writes it, every rank resumes from it.

The recipe (what a driver calls, in this order)
-----------------------------------------------
1. ``context = init_from_env()`` -- reads torchrun's environment (``RANK``, ``LOCAL_RANK``,
   ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), picks NCCL on CUDA machines and gloo otherwise,
   binds the process to its GPU and joins the process group. Without torchrun: world size 1, no group.
2. Seed exactly as a single-process run would, with the *same* seeds on every rank
   (:class:`rewire.train.runtime.Seeds`); never add the rank to a seed. Build the model, attach the
   sparsity method (``rewire.methods.apply_method`` or ``method.attach``), build the *global*
   ``BatchLoader`` (global batch size, same ``order_seed``/``augmentation_seed`` everywhere) and the
   evaluation loader, all on ``context.device``.
3. ``trainer = DistributedTrainer(model, hparams, train_loader, eval_loader, context=context,
   sync_batchnorm=True, run_dir=..., callbacks=...)`` -- converts BatchNorm to SyncBatchNorm, wraps
   the model in DDP, shards every global batch, writes only on rank 0; then ``trainer.fit(resume=True)``.
   (The pieces are usable one by one: :func:`wrap_model`, :class:`ShardedLoader`, :func:`barrier`.)
4. Results, records and plots on ``context.is_main`` only, then ``shutdown()``.

Why the result equals single-process training of the global batch
------------------------------------------------------------------
Every rank draws the *same* global batch ``B`` (same loader seeds) and keeps its contiguous slice
``S_r`` of ``b = |B| / W`` examples (:class:`ShardedLoader`). The trainer's loss on rank ``r`` is the
mean over its shard, ``L_r = (1/b) sum_{i in S_r} l_i``. DDP all-reduces the gradients and divides
by the world size ``W``, so every rank applies::

    (1/W) sum_r grad L_r = (1/W) (1/b) sum_r sum_{i in S_r} grad l_i = (1/|B|) sum_{i in B} grad l_i = grad L

the gradient of the single-process mean loss ``L`` of the global batch, because the shards are equal
(``|B| = W b``; an indivisible batch is refused) and disjoint with union ``B``. Weight decay and
momentum act on identical weights with identical gradients, so the optimizer steps agree too, and
the learning-rate recipe of the paper applies unchanged (the global batch is the paper's batch).
The equation holds when ``l_i`` depends on example ``i`` only. BatchNorm breaks that: its statistics
are taken over the batch, so without synchronisation every shard is normalised by its own
statistics. With ``sync_batchnorm=True`` the statistics are those of the global batch and the
equation holds again (``tools/ddp_equivalence.py`` measures both cases). Which one reproduces the
authors: ``nn.DataParallel`` replicates plain BatchNorm on each GPU, so their statistics were per GPU
(a quarter of the batch each), as with ``sync_batchnorm=False`` here; ``True`` reproduces one device
holding the whole batch (the single-process runs of this repository). Randomness drawn inside the
forward pass (dropout) comes from each rank's global generator, which has the same state on every
rank; it is not bit-identical to the single-process draw (the models of DNW and DPF here use none).

Sparse models under DDP
-----------------------
A sparsified weight (:mod:`rewire.sparse.masks`) is a parametrization: DDP sees, and averages the
gradient of, the dense ``module.parametrizations.weight.original`` that the optimizer updates.
Every ``original`` takes part in every forward pass (both gradient routes give it a gradient
tensor, zero where masked), so ``find_unused_parameters=False`` (the default here, and DDP's
cheaper mode) is correct; a model with parameters a forward pass skips needs ``True``.

DNW's per-forward top-k mask is a deterministic function of the weights (:func:`~rewire.sparse.masks.topk_mask`
breaks ties by index), and the weights are identical on every rank after every step, so the masks are
identical without any communication. Buffers are therefore *not* broadcast at every forward
(``broadcast_buffers`` off, named ``forward_sync_buffers=False`` since torch 2.13; DDP still
broadcasts parameters and buffers from rank 0 once, when it wraps the model): (1) the bool ``mask``
buffer of every sparse tensor has one byte per weight entry, a quarter of the bytes of the gradient
all-reduce, and broadcasting it every step would carry no information; (2) with SyncBatchNorm the
BatchNorm running statistics are updated from the all-reduced global statistics and are already
identical; (3) without SyncBatchNorm the per-rank running statistics differ, but training mode never
reads them (batch statistics are used), and only rank 0's reach the logs (its evaluation), the
checkpoint and, on resume, every rank.
:meth:`DistributedTrainer.fit` ends with :func:`assert_same_across_ranks` on every parameter and
mask (and, with SyncBatchNorm, every buffer), so a divergence stops the run instead of passing unseen.

Rank-0 side effects
-------------------
Only rank 0 writes ``history.json`` and ``checkpoint.pt`` (other ranks get no run directory),
followed by a :func:`barrier` after each epoch, so every rank can read what rank 0 wrote. On resume
every rank loads the *same* checkpoint file (model, optimizer, loader generators, callback states),
so the loaders keep drawing the same global batches. Epoch records hold the global training loss
(the mean of the ranks' shard means, equal to the global mean since the shards are equal) and the
summed throughput. Every rank evaluates the whole evaluation set (identical models give identical
numbers; no communication); only rank 0's are written.

SyncBatchNorm on CPU
--------------------
``torch.nn.SyncBatchNorm`` runs on CUDA only (its statistics kernels have no CPU implementation, and
DDP refuses it in CPU modules). On CPU (gloo: tests, CPU clusters) :func:`wrap_model` uses
:class:`CpuSyncBatchNorm`, the same global-batch statistics computed with differentiable
all-reduces.
"""

from rewire.train.distributed.context import (
    TORCHRUN_VARIABLES,
    DistContext,
    barrier,
    init_from_env,
    main_process_dir,
    shutdown,
)
from rewire.train.distributed.replicas import DataParallelModel, assert_same_across_ranks, replica_state, wrap_model
from rewire.train.distributed.sharding import ShardedLoader, check_global_batch_size, shard_slice
from rewire.train.distributed.sync_batchnorm import CpuSyncBatchNorm
from rewire.train.distributed.trainer import DistributedTrainer

__all__ = [
    "TORCHRUN_VARIABLES",
    "DistContext",
    "init_from_env",
    "shutdown",
    "barrier",
    "main_process_dir",
    "check_global_batch_size",
    "shard_slice",
    "ShardedLoader",
    "CpuSyncBatchNorm",
    "DataParallelModel",
    "wrap_model",
    "replica_state",
    "assert_same_across_ranks",
    "DistributedTrainer",
]
