"""Instruments, one per notebook: they measure the paper's claims; the library never imports them.

* :mod:`.coupling` (notebook 01): the parts of one step's ``dW``, and FedAvg's aggregation error;
* :mod:`.noise` (notebook 02): how DP noise on both factors reaches ``W``;
* :mod:`.sharpness` (notebook 03): Hessian eigenvalues and filter-normalised loss landscapes;
* :mod:`.audit`, :mod:`.audit_run` (notebook 08, ``lalora audit``): an empirical privacy audit of
  the DP step, and :mod:`.authors_mechanism`, the authors' noise it catches.
"""

from .coupling import aggregation_gap, coupling_norms, coupling_terms, delta_w, pairwise_cosine
from .noise import accumulated_noise, noise_terms
from .sharpness import (
    filter_normalised_direction,
    hessian_trace,
    hessian_vector_product,
    landscape_weights,
    loss_function,
    loss_surface,
    merged_space,
    top_hessian_eigenvalue,
)

__all__ = [
    "accumulated_noise",
    "aggregation_gap",
    "coupling_norms",
    "coupling_terms",
    "delta_w",
    "filter_normalised_direction",
    "hessian_trace",
    "hessian_vector_product",
    "landscape_weights",
    "loss_function",
    "loss_surface",
    "merged_space",
    "noise_terms",
    "pairwise_cosine",
    "top_hessian_eigenvalue",
]
