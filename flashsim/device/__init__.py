"""Flash device: measured profiles, the SimPy reference model, its fast path, calibration."""
