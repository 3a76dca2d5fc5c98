"""ADS: share of the time spent selecting (scoring every candidate, choosing) and rebuilding the measurement.

    OMP_NUM_THREADS=2 python experiments/benchmarks/ads_speed.py

One held-out 64x64 phantom, 16 particles, 100 steps, 11 columns acquired after 5 central ones, single-coil
and 8-coil; timings from the sampler's own diagnostics (wall clock, CPU).
"""

import torch
from invsolve.samplers.ads import ads
from invsolve.acquisition import ColumnAcquisition, ActiveMeasurement
from invsolve.operators import synthetic_coil_maps
from invsolve.noise import GaussianNoise
from invsolve.priors import load_default_prior
from invsolve.tasks import phantoms
prior = load_default_prior(); truth = phantoms(4, 1, 64)
for coils in (None, 8):
    acq = ColumnAcquisition((64, 64), None if coils is None else synthetic_coil_maps(coils, (64, 64)))
    init = torch.zeros(64, dtype=torch.bool); init[30:35] = True
    am = ActiveMeasurement.simulate(acq, truth, GaussianNoise(0.01), init, torch.Generator().manual_seed(0))
    out = ads(am, prior, budget=11, steps=100, n_samples=16, generator=torch.Generator().manual_seed(0))
    d = out.diagnostics
    print(f"coils={coils}: total {d['total_seconds']:.1f} s, selection {d['selection_seconds']:.3f} s "
          f"({100*d['selection_seconds']/d['total_seconds']:.2f}%), measurement updates {d['measurement_update_seconds']:.3f} s "
          f"({100*d['measurement_update_seconds']/d['total_seconds']:.2f}%)")
