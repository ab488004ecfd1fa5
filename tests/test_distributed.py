"""The distributed pieces in a real 2-process Gloo group (one spawn for the module) against one
process holding the whole batch: SyncBatchNorm, the losses' global-batch shares, gradient
averaging, sharded extraction gathered in order, the exemplar memory, rank-0 results; and the
launch environment (torchrun, SLURM)."""
import os
import socket
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from uda_reid.adapt.memory import ExemplarMemory
from uda_reid.data.loaders import build_test_loader
from uda_reid.engine.distributed import LaunchEnv, rendezvous_address
from uda_reid.evaluation.extract import extract_features
from uda_reid.losses.functional import circle_loss, cross_entropy_smooth, triplet_loss

WORLD = 2
BATCH = 16  # global batch: 4 identities x 4 images


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def global_inputs():
    """The global batch every test shares (the same on every rank and in the reference)."""
    g = torch.Generator().manual_seed(0)
    return {"maps": torch.randn(BATCH, 3, 4, 4, generator=g) * 2 + 1,
            "probe": torch.randn(BATCH, 3, 4, 4, generator=g),
            "features": torch.randn(BATCH, 6, generator=g),
            "logits": torch.randn(BATCH, 5, generator=g),
            "labels": torch.arange(4).repeat_interleave(4)[torch.randperm(BATCH, generator=g)],
            "classes": torch.randint(5, (BATCH,), generator=g),
            "memory_feats": torch.randn(BATCH, 3, generator=g),
            # index 1 occurs on both ranks: the update must apply rank 0's first
            "memory_idx": torch.tensor([1, 3, 5, 0, 2, 4, 6, 7, 1, 9, 8, 10, 11, 12, 3, 13])}


def losses(features, labels, logits, classes, lengths=None):
    """The losses under test; ``lengths`` (rows of this rank's CE share) tests uneven shares."""
    ce_rows = slice(None) if lengths is None else slice(0, lengths)
    return {"triplet": triplet_loss(features, labels, 0.3),
            "triplet_soft_cosine": triplet_loss(features, labels, 0.0, False, True),
            "circle": circle_loss(features, labels, 0.25, 32.0),
            "ce_uneven": cross_entropy_smooth(logits[ce_rows], classes[ce_rows], 0.1)}


# rows of the CE share per rank (uneven) and, in the reference, the same rows together
CE_ROWS = (3, 7)


def reference():
    """One process holding the global batch."""
    from uda_reid.models.sync_batchnorm import convert_sync_batchnorm

    data = global_inputs()
    out = {}
    bn = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))
    maps = data["maps"].clone().requires_grad_(True)
    (bn(maps) * data["probe"]).sum().backward()
    out["bn"] = (bn[0].running_mean.clone(), bn[0].running_var.clone(), maps.grad,
                 bn[0].weight.grad, bn[0].bias.grad)
    feats = data["features"].clone().requires_grad_(True)
    logits = data["logits"].clone().requires_grad_(True)
    half = BATCH // WORLD
    ce_idx = torch.cat([torch.arange(r * half, r * half + n) for r, n in enumerate(CE_ROWS)])
    for name in ("triplet", "triplet_soft_cosine", "circle", "ce_uneven"):
        feats.grad, logits.grad = None, None
        if name == "ce_uneven":
            loss = cross_entropy_smooth(logits[ce_idx], data["classes"][ce_idx], 0.1)
        else:
            loss = losses(feats, data["labels"], logits, data["classes"])[name]
        loss.backward()
        grad = feats.grad if name != "ce_uneven" else logits.grad
        out[name] = (loss.detach(), grad.clone())
    memory = ExemplarMemory(14, 3)
    memory.update(data["memory_feats"], data["memory_idx"], 0.0)
    memory.update(data["memory_feats"].flip(0), data["memory_idx"], 0.3)
    out["memory"] = memory.slots.clone()
    return out


class ToyNet(nn.Module):
    """Embedding (N, 3): per-channel image means scaled by a parameter."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))

    def forward(self, images):
        return images.mean(dim=(2, 3)) * self.scale


def toy_samples(root):
    """11 images (odd: the two shards differ in size), written by :func:`write_toy_images`."""
    return [(os.path.join(root, f"img{i:02d}.png"), i // 2, i % 3, i) for i in range(11)]


def write_toy_images(root):
    from PIL import Image

    for path, _, _, i in toy_samples(root):
        Image.fromarray(np.full((4, 2, 3), i * 20, dtype=np.uint8)).save(path)


def worker(rank, port, root):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        torch.save(run_checks(rank, root), os.path.join(root, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def run_checks(rank, root):
    import torchvision.transforms as T

    from uda_reid.data.loaders import per_rank_batch_size
    from uda_reid.engine.distributed import average_gradients, restore_rng_states, rng_states
    from uda_reid.models.sync_batchnorm import convert_sync_batchnorm
    from uda_reid.utils.distributed import all_reduce_sum, main_process_result

    data = global_inputs()
    half = BATCH // WORLD
    rows = slice(rank * half, (rank + 1) * half)
    out = {}
    bn = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))
    maps = data["maps"][rows].clone().requires_grad_(True)
    (bn(maps) * data["probe"][rows]).sum().backward()
    # the summed loss of the reference: parameter gradients summed over the ranks
    out["bn"] = (bn[0].running_mean.clone(), bn[0].running_var.clone(), maps.grad,
                 all_reduce_sum(bn[0].weight.grad), all_reduce_sum(bn[0].bias.grad))

    for name in ("triplet", "triplet_soft_cosine", "circle", "ce_uneven"):
        feats = data["features"][rows].clone().requires_grad_(True)
        logits = data["logits"][rows].clone().requires_grad_(True)
        loss = losses(feats, data["labels"][rows], logits, data["classes"][rows],
                      CE_ROWS[rank])[name]
        loss.backward()
        grad = logits.grad if name == "ce_uneven" else feats.grad
        # the global loss is the mean of the ranks' shares, so its gradient with respect to
        # this rank's rows is this rank's gradient / WORLD (the gathering brought the other
        # ranks' contributions here)
        out[name] = (all_reduce_sum(loss.detach()) / WORLD, grad / WORLD)

    memory = ExemplarMemory(14, 3)
    memory.update(data["memory_feats"][rows], data["memory_idx"][rows], 0.0)
    memory.update(data["memory_feats"].flip(0)[rows], data["memory_idx"][rows], 0.3)
    out["memory"] = memory.slots.clone()

    samples = toy_samples(root)
    loader, _ = build_test_loader(samples[:4], samples[4:], T.ToTensor(), 2)
    out["extract"] = extract_features(ToyNet(), loader)
    out["shard_size"] = len(loader.sampler)

    used, unused, absent = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    used.grad = torch.tensor([1.0, 3.0]) * (rank + 1)
    if rank == 1:
        unused.grad = torch.tensor([4.0, 8.0])
    average_gradients([used, unused, absent])
    out["grads"] = (used.grad, unused.grad, absent.grad)

    out["main_result"] = main_process_result(lambda: f"computed on rank {rank}")
    try:
        per_rank_batch_size(15)
    except ValueError as err:
        out["batch_error"] = str(err)
    out["batch"] = per_rank_batch_size(16)

    torch.manual_seed(100 + rank)
    saved = rng_states()
    first = torch.rand(3)
    torch.manual_seed(7)
    restore_rng_states(saved)
    out["rng"] = (first, torch.rand(3), len(saved["ranks"]))
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("images"))
    write_toy_images(root)
    mp.start_processes(worker, args=(free_port(), root), nprocs=WORLD, start_method="spawn")
    return {r: torch.load(os.path.join(root, f"rank{r}.pt"), weights_only=False)
            for r in range(WORLD)}, root


@pytest.fixture(scope="module")
def ref():
    return reference()


def test_sync_batchnorm_on_cpu_equals_batchnorm_over_the_global_batch(ranks, ref):
    results, _ = ranks
    running_mean, running_var, input_grad, weight_grad, bias_grad = ref["bn"]
    half = BATCH // WORLD
    for rank, out in results.items():
        mean, var, grad, w_grad, b_grad = out["bn"]
        assert torch.allclose(mean, running_mean, atol=1e-6)
        assert torch.allclose(var, running_var, atol=1e-5)  # unbiased over all 16*16 values
        assert torch.allclose(grad, input_grad[rank * half:(rank + 1) * half], atol=1e-5)
        assert torch.allclose(w_grad, weight_grad, atol=1e-4)
        assert torch.allclose(b_grad, bias_grad, atol=1e-4)
    # the statistics really are global: a rank's own half alone gives other running stats
    alone = nn.BatchNorm2d(3)
    alone(global_inputs()["maps"][:half])
    assert not torch.allclose(alone.running_mean, running_mean, atol=1e-3)


@pytest.mark.parametrize("name", ["triplet", "triplet_soft_cosine", "circle", "ce_uneven"])
def test_loss_shares_average_to_the_global_batch_loss_and_gradient(ranks, ref, name):
    results, _ = ranks
    loss, grad = ref[name]
    for rank, out in results.items():
        mean_loss, rank_grad = out[name]
        assert torch.allclose(mean_loss, loss, atol=1e-5), (rank, mean_loss, loss)
    got = torch.cat([results[r][name][1] for r in range(WORLD)])
    assert torch.allclose(got, grad, atol=1e-6), (got - grad).abs().max()


def test_memory_updates_from_every_ranks_batch_in_global_order(ranks, ref):
    results, _ = ranks
    for out in results.values():
        assert torch.equal(out["memory"], ref["memory"])


def test_sharded_extraction_is_gathered_in_dataset_order(ranks):
    results, root = ranks
    import torchvision.transforms as T

    samples = toy_samples(root)
    loader, _ = build_test_loader(samples[:4], samples[4:], T.ToTensor(), 2)
    want = extract_features(ToyNet(), loader)
    assert [results[r]["shard_size"] for r in range(WORLD)] == [6, 5]
    for out in results.values():
        feats, pids, camids, paths = out["extract"]
        assert torch.equal(feats, want[0])
        assert torch.equal(pids, want[1]) and torch.equal(camids, want[2])
        assert paths == want[3] == [s[0] for s in samples]


def test_gradients_are_averaged_and_missing_ones_count_zero(ranks):
    results, _ = ranks
    for out in results.values():
        used, unused, absent = out["grads"]
        assert torch.equal(used, torch.tensor([1.5, 4.5]))  # (1 * g + 2 * g) / 2
        assert torch.equal(unused, torch.tensor([2.0, 4.0]))  # zero on rank 0
        assert absent is None  # no rank had one: the optimiser skips it as in one process


def test_rank0_result_batch_split_and_per_rank_random_states(ranks):
    results, _ = ranks
    for rank, out in results.items():
        assert out["main_result"] == "computed on rank 0"
        assert out["batch"] == 8
        assert out["batch_error"] == ("SOLVER.IMS_PER_BATCH=15 is not divisible by the 2 "
                                      "distributed processes")
        first, again, saved = out["rng"]
        assert saved == WORLD and torch.equal(first, again)  # its own rank's state back
    assert not torch.equal(results[0]["rng"][0], results[1]["rng"][0])


def test_resuming_with_another_number_of_processes_is_an_error():
    from uda_reid.engine.distributed import restore_rng_states
    from uda_reid.engine.seed import get_rng_states

    state = get_rng_states()
    with pytest.raises(ValueError, match=r"run of 2 process\(es\); resume it with 2, not 1"):
        restore_rng_states({"ranks": [state, state]})
    restore_rng_states(state)  # one process's checkpoint in one process


@pytest.mark.parametrize("environ, want", [
    ({}, LaunchEnv(0, 1, 0)),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, LaunchEnv(3, 4, 1)),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, LaunchEnv(5, 8, 1)),
    # torchrun inside a SLURM allocation: torchrun's variables win
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "SLURM_PROCID": "0",
      "SLURM_NTASKS": "1"}, LaunchEnv(1, 2, 1)),
])
def test_launch_environment_from_torchrun_or_slurm(environ, want):
    assert LaunchEnv.from_environ(environ) == want


def test_bad_launch_environment_is_named():
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        LaunchEnv.from_environ({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match=r"SLURM_PROCID=4 is outside 0..3"):
        LaunchEnv.from_environ({"SLURM_PROCID": "4", "SLURM_NTASKS": "4"})
    with pytest.raises(ValueError, match="MASTER_ADDR is not set for a multi-node run"):
        rendezvous_address({"SLURM_NNODES": "2"})
    assert rendezvous_address({"SLURM_NNODES": "1"}) == {"MASTER_ADDR": "127.0.0.1",
                                                         "MASTER_PORT": "29500"}
    assert rendezvous_address({"MASTER_ADDR": "node7", "MASTER_PORT": "1234"}) == {
        "MASTER_ADDR": "node7", "MASTER_PORT": "1234"}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
