"""convdp: what each layer of a convnet has learned, by Dirichlet-process Gaussian mixtures.

The package holds all the logic of the workflow; the Snakemake rules only call it:

- :mod:`convdp.data`      data sets to Zarr (images N×H×W×C, labels, provenance)
- :mod:`convdp.models`    the nets, their layer names, training, checkpoints
- :mod:`convdp.extract`   streaming, chunked activation extraction to Zarr
- :mod:`convdp.samples`   activations → samples (position or image mode)
- :mod:`convdp.cluster`   DPGMM and BIC-baseline fits of one layer
- :mod:`convdp.aggregate` summary table and figures
"""

__version__ = "0.1.0"
