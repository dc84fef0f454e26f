"""Pure measurement: timing, memory, FLOPs and MFU, kernels, energy. No formatting, no I/O of records."""
