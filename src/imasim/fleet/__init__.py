"""Fleets of attested machines: evidence bundles, simulation, verification on Dask, tables.

* :mod:`imasim.fleet.bundle`: the evidence bundle of one machine (sans-I/O);
* :mod:`imasim.fleet.io`: bundles and fleet folders on disk;
* :mod:`imasim.fleet.simulate`: a simulated fleet, some machines compromised, with the
  ground truth;
* :mod:`imasim.fleet.verify`: every bundle through the one attestation call, in one
  process or on Dask distributed;
* :mod:`imasim.fleet.table`: every measurement-list entry of a fleet as a Parquet row.

The core never imports this package. Verification on Dask and the Parquet files need the
``fleet`` extra (``pip install 'imasim[fleet]'``: ``dask[distributed]`` and ``pyarrow``),
imported only by the functions that use them.
"""

from .bundle import BUNDLE_FORMAT, EvidenceBundle

__all__ = ["BUNDLE_FORMAT", "EvidenceBundle"]
