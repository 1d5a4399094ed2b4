"""Per-token cost of an IOPlan: I/O (the device model), memory management (memcpy), compute;
the paper-style tables; and the `simulate`/`compare` commands.

Submodules are imported by name (`flashsim.cost.simulate`): the CLI imports this package
to register its commands, and `simulate` pulls in pandas (~0.7 s).
"""
