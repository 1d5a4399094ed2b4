"""YAML experiment sweeps: grids, executors (local, Dask), resumable results, plots."""
