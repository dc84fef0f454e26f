"""Peak dense (no sparsity) FLOP/s per GPU and dtype, each with its source, for MFU.

`float32` means plain FP32 (non-tensor-core) throughput, which is what torch uses for float32 matmuls
by default (`torch.get_float32_matmul_precision() == "highest"`); cuDNN may still use TF32 for
convolutions, so an FP32 MFU above 1 on Ampere+ is possible and means TF32 did the work.
None = unknown or unsupported: the MFU is then null, never guessed. Users pass `--peak-tflops`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeakEntry:
    match: tuple[str, ...]  # lower-case substrings that must all be in the device name
    label: str
    tflops: dict[str, float | None]  # dtype -> dense peak TFLOP/s
    source: str


PEAKS: tuple[PeakEntry, ...] = (
    # More specific names (PCIe, NVL) come before the generic SXM entries.
    PeakEntry(("h200",), "H200 SXM", {"float32": 67.0, "tfloat32": 494.7, "bfloat16": 989.4, "float16": 989.4},
              "NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column, dense = half the sparsity figures"),
    PeakEntry(("h100", "pcie"), "H100 PCIe", {"float32": 51.0, "tfloat32": 378.0, "bfloat16": 756.0,
                                              "float16": 756.0},
              "NVIDIA H100 Tensor Core GPU datasheet, PCIe column, dense"),
    PeakEntry(("h100",), "H100 SXM", {"float32": 67.0, "tfloat32": 494.7, "bfloat16": 989.4, "float16": 989.4},
              "NVIDIA H100 Tensor Core GPU datasheet, SXM5 column, dense = half the sparsity figures"),
    PeakEntry(("a100",), "A100", {"float32": 19.5, "tfloat32": 156.0, "bfloat16": 312.0, "float16": 312.0},
              "NVIDIA A100 Tensor Core GPU datasheet (SXM4 and PCIe share these dense peaks)"),
    PeakEntry(("l4",), "L4", {"float32": 30.3, "tfloat32": 60.0, "bfloat16": 121.0, "float16": 121.0},
              "NVIDIA L4 datasheet: FP32 30.3; TF32 120, BF16/FP16 242 with sparsity (dense = half)"),
    PeakEntry(("4090",), "GeForce RTX 4090", {"float32": 82.6, "tfloat32": 82.6, "bfloat16": 165.2,
                                              "float16": 165.2},
              "NVIDIA Ada Lovelace architecture whitepaper, RTX 4090: FP16/BF16 tensor with FP32 accumulate, dense"),
    PeakEntry(("t4",), "T4", {"float32": 8.1, "tfloat32": None, "bfloat16": None, "float16": 65.0},
              "NVIDIA T4 datasheet: FP32 8.1, mixed FP16/FP32 65 TFLOPS; Turing has no BF16/TF32 tensor cores"),
    PeakEntry(("v100", "pcie"), "V100 PCIe", {"float32": 14.0, "tfloat32": None, "bfloat16": None,
                                              "float16": 112.0},
              "NVIDIA V100 datasheet, PCIe column; Volta has no BF16/TF32 tensor cores"),
    PeakEntry(("v100",), "V100 SXM2", {"float32": 15.7, "tfloat32": None, "bfloat16": None, "float16": 125.0},
              "NVIDIA V100 datasheet, SXM2 column; Volta has no BF16/TF32 tensor cores"),
)


def lookup(device_name: str | None) -> PeakEntry | None:
    if not device_name:
        return None
    name = device_name.lower()
    for e in PEAKS:
        if all(m in name for m in e.match):
            return e
    return None


def peak_flops(device_name: str | None, dtype: str, user_tflops: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s or None, where it came from)."""
    if user_tflops is not None:
        return user_tflops * 1e12, "user-supplied --peak-tflops"
    e = lookup(device_name)
    if e is None:
        return None, f"no peak known for device {device_name!r}; pass --peak-tflops"
    v = e.tflops.get(dtype)
    if v is None:
        return None, f"{e.label} has no listed {dtype} peak ({e.source})"
    return v * 1e12, f"{e.label} {dtype} {v} TFLOP/s: {e.source}"
