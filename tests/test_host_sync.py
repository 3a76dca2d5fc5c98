"""No host-device synchronisation inside the sampling loops (GPU readiness, issue 24).

A sync is any call that reads a tensor's value on the host: ``.item()``, ``bool(t)``, ``float(t)``, ``int(t)``,
``.tolist()``, ``.cpu()``. They are counted while a sampler runs 4 and then 8 steps on a tiny EDM network
prior; the difference divided by 4 is the number per step (set-up and the final output cancel). DPS, DDRM and
RED-Diff and DiffPIR (SVD data step) make none. The samplers that make some, and why they need them (also in the README's GPU section):

* DAPS, AFES, FKC, TDS, PiGDM with ``data_variance="auto"``: one per step, the Hutchinson estimate of the prior's
  posterior variance becomes the scalar ``r_t^2`` of the Gaussian kernel (``posterior_variance.py``);
* PiGDM: its CG solve checks convergence once per CG iteration (``operators/base.py``: ``conjugate_gradient``);
* AFES, FKC, TDS: two more, in ``particles.py``: the weight checks (NaN / all-zero / underflow, read back together
  as one) and the effective sample size deciding on the host whether to resample.
"""

from __future__ import annotations

import collections
import contextlib

import pytest
import torch

from invsolve.priors.edm import make_edm_prior
from invsolve.samplers import declarations
from test_sampler_contract import gen, image_problem

READS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu")


@contextlib.contextmanager
def counting_host_reads():
    counts: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name):
        def read(self, *args, **kwargs):
            counts[name] += 1
            return originals[name](self, *args, **kwargs)
        return read

    try:
        for name in READS:
            setattr(torch.Tensor, name, wrap(name))
        yield counts
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def tiny_network_prior():
    return make_edm_prior({"arch": "adm", "channels": 1, "resolution": 8, "width": 32, "channel_mult": [1],
                           "num_blocks": 1, "attn_resolutions": []}, seed=0)


def syncs_per_step(name: str, **settings) -> float:
    measurement, _ = image_problem()
    prior = tiny_network_prior()
    totals = []
    for steps in (4, 8):
        with counting_host_reads() as counts:
            declarations()[name].run(measurement, prior, steps=steps, n_samples=2, generator=gen(0), **settings)
        totals.append(sum(counts.values()))
    return (totals[1] - totals[0]) / 4


@pytest.mark.parametrize("name", ["dps", "ddrm", "red-diff", "diffpir"])
def test_sampling_loop_reads_nothing_back(name):
    assert syncs_per_step(name) == 0


def test_daps_reads_back_one_scalar_per_step():
    assert syncs_per_step("daps") == 1  # the posterior-variance estimate r_t^2


def test_particle_samplers_read_back_three_scalars_per_step():
    assert syncs_per_step("afes") == 3  # r_t^2, the weight checks, the resampling decision


def test_the_counter_sees_a_read():
    with counting_host_reads() as counts:
        float(torch.ones(()))
        torch.zeros(2).tolist()
    assert counts["__float__"] == 1 and counts["tolist"] == 1
