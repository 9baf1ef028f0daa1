"""Data-parallel training (rewire.train.distributed): sharding, the process context, rank-0 writes, and
2-process torchrun + DDP training checked against one process (tools/ddp_equivalence.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from rewire.data import BatchLoader
from rewire.train.distributed import (
    TORCHRUN_VARIABLES,
    CpuSyncBatchNorm,
    DistContext,
    ShardedLoader,
    check_global_batch_size,
    init_from_env,
    main_process_dir,
    shard_slice,
    shutdown,
    wrap_model,
)
from rewire.train.trainer import TrainingHparams

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "tools" / "ddp_equivalence.py"

# Float32 weights after 8 SGD steps differ between one process and 2 ranks only by rounding: the
# gradient and the BatchNorm statistics are summed in another order (per shard, then over ranks).
# One rounding is ~6e-8 relative (2^-24) on weights of order 0.1-1; 8 steps of lr <= 0.1 with momentum
# 0.9 carry a few hundred such roundings at most, i.e. a few 1e-6 in the worst case. 1e-5 leaves
# room above that and sits orders of magnitude below what a wrong shard, a missing gradient average
# or unsynchronised BatchNorm statistics change. Measured (torch 2.14, CPU, gloo): 1.5e-7 with
# SyncBatchNorm, 0.24 without it.
WEIGHT_TOLERANCE = 1e-5


def context(rank: int, world_size: int) -> DistContext:
    """A process context without a process group: enough for the sharding arithmetic."""
    return DistContext(rank, rank, world_size, "gloo", torch.device("cpu"))


def indexed_loader(batch_size: int, examples: int = 24, drop_last: bool = True) -> BatchLoader:
    """Shuffled, augmented loader whose label is the example's index (every example recognisable)."""
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (examples, 3, 6, 6), generator=g, dtype=torch.uint8)
    return BatchLoader(
        images,
        torch.arange(examples),
        batch_size,
        shuffle=True,
        augment=True,
        mean=(0.4, 0.5, 0.6),
        std=(0.2, 0.25, 0.3),
        order_seed=11,
        augmentation_seed=12,
        drop_last=drop_last,
        crop_padding=2,
    )


# --------------------------------------------------------------------------------- sharding


def test_rank_shards_partition_every_global_batch_exactly():
    world = 3
    reference = indexed_loader(12)
    shards = [ShardedLoader(indexed_loader(12), context(rank, world)) for rank in range(world)]
    assert [s.batch_size for s in shards] == [4, 4, 4] and len(shards[0]) == len(reference) == 2
    for _epoch in range(2):  # the second epoch draws a new order and new crops on every copy alike
        per_rank = [list(s) for s in shards]
        global_batches = list(reference)
        for step, (images, labels) in enumerate(global_batches):
            rank_labels = [per_rank[r][step][1] for r in range(world)]
            assert all(part.numel() == 4 for part in rank_labels)
            assert torch.equal(torch.cat(rank_labels), labels)  # union in rank order = the global batch
            assert torch.equal(torch.cat([per_rank[r][step][0] for r in range(world)]), images)
            seen = [set(part.tolist()) for part in rank_labels]
            assert all(not (seen[a] & seen[b]) for a in range(world) for b in range(a + 1, world))
        assert len({tuple(labels.tolist()) for _, labels in global_batches}) == 2  # batches differ (not a constant)


def test_shard_slice_is_contiguous_and_in_rank_order():
    assert [shard_slice(16, context(r, 4)) for r in range(4)] == [slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 16)]
    assert shard_slice(7, context(0, 1)) == slice(0, 7)


def test_indivisible_global_batch_is_refused_with_the_sizes_that_work():
    with pytest.raises(ValueError, match=r"batch size 10 .* 4 equal shards.*\(e\.g\. 8 or 12\)"):
        check_global_batch_size(10, 4)
    with pytest.raises(ValueError, match=r"e\.g\. 4\)"):
        check_global_batch_size(3, 4)
    with pytest.raises(ValueError, match="multiple of 4"):
        ShardedLoader(indexed_loader(10), context(1, 4))
    with pytest.raises(ValueError, match="last global batch holds 2 examples.*drop_last=True"):  # 26 = 2 x 12 + 2
        ShardedLoader(indexed_loader(12, examples=26, drop_last=False), context(0, 4))
    check_global_batch_size(12, 4)


def test_sharded_loader_resumes_through_the_global_loader_state():
    first = ShardedLoader(indexed_loader(12), context(1, 2))
    list(first)
    resumed = ShardedLoader(indexed_loader(12), context(1, 2))
    resumed.load_state_dict(first.state_dict())
    assert [labels.tolist() for _, labels in resumed] == [labels.tolist() for _, labels in first]


# ------------------------------------------------------------------------- process context


def test_init_from_env_without_torchrun_is_one_process_without_a_group(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    ctx = init_from_env()
    assert (ctx.rank, ctx.local_rank, ctx.world_size) == (0, 0, 1)
    assert ctx.is_main and not ctx.distributed
    assert ctx.backend == ("nccl" if torch.cuda.is_available() else "gloo")
    assert not (dist.is_available() and dist.is_initialized())
    shutdown()  # a no-op without a group


def test_partial_torchrun_environment_is_refused():
    with pytest.raises(ValueError, match="WORLD_SIZE, MASTER_ADDR, MASTER_PORT missing"):
        init_from_env(environ={"RANK": "0", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="rank 2, local rank 0, world size 2"):
        init_from_env(
            backend="gloo",
            environ={"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
        )


def test_only_rank_zero_gets_the_run_directory(tmp_path):
    assert main_process_dir(context(0, 4), tmp_path) == tmp_path
    assert [main_process_dir(context(r, 4), tmp_path) for r in (1, 2, 3)] == [None, None, None]
    assert main_process_dir(context(0, 4), None) is None


def test_wrap_model_leaves_a_single_process_model_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert wrap_model(model, context(0, 1), sync_batchnorm=True) is model
    assert type(model[1]) is nn.BatchNorm2d


# ----------------------------------------------------------------------- synchronised BatchNorm


@pytest.fixture
def one_rank_group():
    """A gloo process group of one rank in this process (all-reduce = identity), removed afterwards."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_on_one_rank_is_batchnorm(one_rank_group):
    torch.manual_seed(3)
    plain = nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        plain.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        plain.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    synced = CpuSyncBatchNorm.convert(nn.Sequential(nn.BatchNorm2d(3, momentum=0.3)))[0]
    synced.load_state_dict(plain.state_dict())
    assert isinstance(synced, CpuSyncBatchNorm)
    x = (torch.randn(5, 3, 4, 4) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1) + 2.0).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    upstream = torch.randn(5, 3, 4, 4)
    (plain(x) * upstream).sum().backward()
    (synced(x2) * upstream).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(synced.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(synced.bias.grad, plain.bias.grad)
    torch.testing.assert_close(synced.running_mean, plain.running_mean)
    torch.testing.assert_close(synced.running_var, plain.running_var)  # unbiased N/(N-1) estimate, as BatchNorm
    assert int(synced.num_batches_tracked) == int(plain.num_batches_tracked) == 1
    synced.eval(), plain.eval()
    torch.testing.assert_close(synced(x.detach()), plain(x.detach()))


# --------------------------------------------------------------- 2 processes against one process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_equivalence(out: Path, *arguments: str) -> str:
    """Run tools/ddp_equivalence.py with torchrun on 2 CPU processes (gloo); its output."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    if sys.platform.startswith("linux") and "GLOO_SOCKET_IFNAME" not in env and Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # both ranks are on this machine: loopback avoids host-name lookups
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(SCRIPT),
        "--out",
        str(out),
        "--backend",
        "gloo",  # CPU processes, also on a GPU machine
        *arguments,
    ]
    process = subprocess.Popen(
        command,
        cwd=REPOSITORY,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and the two workers it started
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish in 180 s:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Launch tools/ddp_equivalence.py with torchrun on 2 CPU processes (gloo) once; its result file."""
    out = tmp_path_factory.mktemp("ddp")
    output = launch_equivalence(out)
    results = torch.load(out / "ddp_equivalence.pt", weights_only=True)
    results["output"] = output
    results["out"] = out
    return results


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in a)


def test_two_ranks_with_sync_batchnorm_reproduce_one_process(ddp_results):
    reference, sync = ddp_results["reference"], ddp_results["sync"]
    assert ddp_results["world_size"] == 2 and ddp_results["backend"] == "gloo"
    assert len(reference["masks"]) == 6  # every convolution of SmallConvNet is sparse
    difference = max_difference(sync["weights"], reference["weights"])
    assert difference < WEIGHT_TOLERANCE, ddp_results["output"]
    for name, mask in reference["masks"].items():  # the top-k choice is |w| gaps >> the weight difference away
        assert torch.equal(sync["masks"][name], mask), (name, reference["mask_margins"][name], difference)
        assert int(mask.sum()) == mask.numel() // 2  # exactly k real edges
    # the global training loss of each epoch: the mean of the two ranks' shard means
    torch.testing.assert_close(
        torch.tensor(sync["train_loss"]), torch.tensor(reference["train_loss"]), rtol=1e-5, atol=0
    )


def test_without_sync_batchnorm_the_difference_is_far_larger(ddp_results):
    reference, sync, no_sync = ddp_results["reference"], ddp_results["sync"], ddp_results["no_sync"]
    unsynced = max_difference(no_sync["weights"], reference["weights"])
    assert unsynced > 100 * WEIGHT_TOLERANCE, ddp_results["output"]
    assert unsynced > 1000 * max_difference(sync["weights"], reference["weights"])


def test_every_rank_resumes_from_rank_zeros_checkpoint_exactly(ddp_results):
    resumed, sync = ddp_results["resumed"], ddp_results["sync"]
    assert max_difference(resumed["weights"], sync["weights"]) == 0.0
    assert all(torch.equal(resumed["masks"][n], sync["masks"][n]) for n in sync["masks"])
    assert resumed["train_loss"] == sync["train_loss"]


def test_only_rank_zero_writes_and_mismatches_are_caught(ddp_results):
    out = ddp_results["out"]
    assert ddp_results["writers"] == [str(out / "sync"), None]
    assert ddp_results["sync_run_files"] == ["checkpoint.pt", "history.json"]
    assert ddp_results["mismatch_detected"]  # assert_same_across_ranks is not vacuous
    checkpoint = torch.load(out / "sync" / "checkpoint.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in checkpoint["model"])  # checkpoints load in one process
    assert [entry["type"] for entry in checkpoint["callbacks"]] == ["StopAtEpoch"]  # the internal callback is hidden


# ---------------------------------------------------------------- through the run engine (fit_run)


@pytest.fixture(scope="module")
def engine_results(tmp_path_factory):
    """Launch ``tools/ddp_equivalence.py --mode engine`` once: fit_run alone, then on 2 ranks, then again."""
    out = tmp_path_factory.mktemp("ddp_engine")
    output = launch_equivalence(out, "--mode", "engine")
    results = torch.load(out / "ddp_engine.pt", weights_only=True)
    results["output"] = output
    return results


def test_engine_on_two_ranks_reproduces_one_process(engine_results):
    single, ddp = engine_results["single"], engine_results["ddp"]
    assert engine_results["world_size"] == 2 and engine_results["backend"] == "gloo"
    assert len(single["masks"]) == 6
    difference = max_difference(ddp["weights"], single["weights"])
    assert difference < WEIGHT_TOLERANCE, engine_results["output"]
    assert all(torch.equal(ddp["masks"][name], mask) for name, mask in single["masks"].items())
    torch.testing.assert_close(torch.tensor(ddp["train_loss"]), torch.tensor(single["train_loss"]), rtol=1e-5, atol=0)


def test_engine_run_has_the_single_process_identity_and_one_record(engine_results):
    name = engine_results["ddp_run_dir"]
    assert name == engine_results["single_run_dir"]  # same settings hash and code hash: the world size is not in them
    ranks = engine_results["ranks"]
    assert len({rank["run_dir"] for rank in ranks}) == 1
    assert [rank["writes"] for rank in ranks] == [1, 0]  # only rank 0 writes record.json
    assert engine_results["record_files"] == [f"ddp/{name}/record.json", f"single/{name}/record.json"]
    record = engine_results["record_on_disk"]
    assert record["world_size"] == 2 and "world_size" not in engine_results["single_record"]
    assert all(rank["record"] == record for rank in ranks)  # every rank returns rank 0's record
    assert record["config"] == engine_results["single_record"]["config"]
    assert [rank["trained_now"] for rank in ranks] == [[True, False], [True, False]]  # then skipped everywhere
    assert all(rank["records_equal"] for rank in ranks)


def tiny_engine_run(root: Path, batch_size: int = 10, **kwargs):
    """fit_run of a small dense ConvNet on 30 synthetic images for one epoch."""
    from synthetic import tiny_dataset

    from rewire.experiments import engine

    data = tiny_dataset()
    torch.manual_seed(0)
    model = engine.ModelSpec("small_convnet", num_classes=3, kwargs={"width": 4}).build()
    norm = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    train = BatchLoader(
        data.train_images,
        data.train_labels,
        batch_size,
        shuffle=True,
        augment=True,
        order_seed=1,
        drop_last=True,
        **norm,
    )
    test = BatchLoader(data.test_images, data.test_labels, 12, shuffle=False, augment=False, **norm)
    hparams = TrainingHparams(epochs=1, lr=0.05, weight_decay=0.0)
    request = engine.RunRequest(
        name="toy",
        config={"method": "dense"},
        model=model,
        hparams=hparams,
        train_loader=train,
        eval_loader=test,
        code=(__name__,),  # this test module drives the run
    )
    result = engine.fit_run(request, engine.RunOptions(root=root, progress=False, **kwargs))
    model_modules = {type(m).__module__ for m in model.modules() if type(m).__module__.startswith("rewire.")}
    expected = engine.run_directory(
        root,
        "toy",
        {"method": "dense", "hparams": hparams.as_dict()},
        engine.code_fingerprint({"rewire.experiments.engine", __name__, *model_modules}),
    )
    return result, expected


@pytest.mark.usefixtures("one_thread")
def test_fit_run_refuses_an_indivisible_global_batch_before_any_work(tmp_path):
    four_ranks = DistContext(0, 0, 4, "gloo", torch.device("cpu"))  # no process group: the check comes first
    with pytest.raises(ValueError, match=r"global batch size 10 .* 4 equal shards.*\(e\.g\. 8 or 12\)"):
        tiny_engine_run(tmp_path / "runs", distributed=four_ranks)
    assert not (tmp_path / "runs").exists()
    from synthetic import tiny_dataset

    from rewire.experiments.engine import RunContext

    with pytest.raises(ValueError, match=r"e\.g\. 8 or 12"):
        RunContext(
            tiny_dataset(),
            torch.device("cpu"),
            batch_size=10,
            checkpoint_root=tmp_path,
            code=(__name__,),
            distributed=four_ranks,
        )


@pytest.mark.usefixtures("one_thread")
def test_fit_run_without_distributed_is_unchanged(tmp_path):
    plain, expected = tiny_engine_run(tmp_path / "plain")
    assert plain.run_dir == expected  # <name>-<settings hash>-<code hash>, as before
    assert "world_size" not in plain.record and plain.trained_now
    one, expected_one = tiny_engine_run(tmp_path / "one", distributed=DistContext.single_process("cpu"))
    assert one.run_dir.name == plain.run_dir.name == expected_one.name
    assert one.record["world_size"] == 1
    batchnorms = [type(m) for m in plain.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert batchnorms and set(batchnorms) == {nn.BatchNorm2d}  # the model is trained as given: no conversion, no DDP
