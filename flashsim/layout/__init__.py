"""Weight layouts on flash and the per-token IOPlans they produce."""
