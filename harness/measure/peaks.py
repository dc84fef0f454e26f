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
    # Exact device names as NVML and torch.cuda.get_device_name report them (compared case- and
    # whitespace-insensitively). Never substrings: "L40S" contains "L4", "H100 NVL" contains "H100".
    names: tuple[str, ...]
    label: str
    tflops: dict[str, float | None]  # dtype -> dense peak TFLOP/s
    source: str


# H100 and H200 share their compute peaks (the H200 differs in memory only), per form factor.
_HOPPER_SXM = {"float32": 67.0, "tfloat32": 494.7, "bfloat16": 989.4, "float16": 989.4}
_HOPPER_NVL = {"float32": 60.0, "tfloat32": 417.5, "bfloat16": 835.5, "float16": 835.5}

PEAKS: tuple[PeakEntry, ...] = (
    PeakEntry(("NVIDIA H200",), "H200 SXM",
              _HOPPER_SXM,
              "NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column, dense = half the sparsity figures"),
    PeakEntry(("NVIDIA H200 NVL",), "H200 NVL",
              _HOPPER_NVL,
              "NVIDIA H200 Tensor Core GPU datasheet (2024), NVL column: FP32 60; TF32 835, BF16/FP16 1671 "
              "with sparsity (dense = half)"),
    PeakEntry(("NVIDIA H100 PCIe",), "H100 PCIe",
              {"float32": 51.0, "tfloat32": 378.0, "bfloat16": 756.0, "float16": 756.0},
              "NVIDIA H100 Tensor Core GPU datasheet, PCIe column, dense"),
    PeakEntry(("NVIDIA H100 NVL",), "H100 NVL",
              _HOPPER_NVL,
              "NVIDIA H100 Tensor Core GPU datasheet, H100 NVL column (per GPU): FP32 60; TF32 835, BF16/FP16 1671 "
              "with sparsity (dense = half)"),
    PeakEntry(("NVIDIA H100 80GB HBM3",), "H100 SXM",
              _HOPPER_SXM,
              "NVIDIA H100 Tensor Core GPU datasheet, SXM5 column, dense = half the sparsity figures"),
    PeakEntry(("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe"),
              "A100", {"float32": 19.5, "tfloat32": 156.0, "bfloat16": 312.0, "float16": 312.0},
              "NVIDIA A100 Tensor Core GPU datasheet (SXM4 and PCIe share these dense peaks)"),
    PeakEntry(("NVIDIA L4",), "L4", {"float32": 30.3, "tfloat32": 60.0, "bfloat16": 121.0, "float16": 121.0},
              "NVIDIA L4 datasheet: FP32 30.3; TF32 120, BF16/FP16 242 with sparsity (dense = half)"),
    PeakEntry(("NVIDIA L40S",), "L40S", {"float32": 91.6, "tfloat32": 183.0, "bfloat16": 362.05, "float16": 362.05},
              "NVIDIA L40S datasheet: FP32 91.6; TF32 183, BF16/FP16 362.05 dense (366 / 733 with sparsity)"),
    PeakEntry(("NVIDIA GeForce RTX 4090",), "GeForce RTX 4090",
              {"float32": 82.6, "tfloat32": 82.6, "bfloat16": 165.2, "float16": 165.2},
              "NVIDIA Ada Lovelace architecture whitepaper, RTX 4090: FP16/BF16 tensor with FP32 accumulate, dense"),
    PeakEntry(("Tesla T4",), "T4", {"float32": 8.1, "tfloat32": None, "bfloat16": None, "float16": 65.0},
              "NVIDIA T4 datasheet: FP32 8.1, mixed FP16/FP32 65 TFLOPS; Turing has no BF16/TF32 tensor cores"),
    PeakEntry(("Tesla V100-PCIE-16GB", "Tesla V100-PCIE-32GB"), "V100 PCIe",
              {"float32": 14.0, "tfloat32": None, "bfloat16": None, "float16": 112.0},
              "NVIDIA V100 datasheet, PCIe column; Volta has no BF16/TF32 tensor cores"),
    PeakEntry(("Tesla V100-SXM2-16GB", "Tesla V100-SXM2-32GB"), "V100 SXM2",
              {"float32": 15.7, "tfloat32": None, "bfloat16": None, "float16": 125.0},
              "NVIDIA V100 datasheet, SXM2 column; Volta has no BF16/TF32 tensor cores"),
)


def _norm(name: str) -> str:
    return " ".join(name.lower().split())


_BY_NAME = {_norm(n): e for e in PEAKS for n in e.names}


def lookup(device_name: str | None) -> PeakEntry | None:
    """The entry for exactly this model name; None for any other (a near name is a different GPU)."""
    if not device_name:
        return None
    return _BY_NAME.get(_norm(device_name))


def peak_flops(device_name: str | None, dtype: str, user_tflops: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s or None, where it came from)."""
    if user_tflops is not None:
        return user_tflops * 1e12, "user-supplied --peak-tflops"
    e = lookup(device_name)
    if e is None:
        return None, (f"unknown: no peak listed for device {device_name!r} (the table matches exact model "
                      "names only); pass --peak-tflops")
    v = e.tflops.get(dtype)
    if v is None:
        return None, f"{e.label} has no listed {dtype} peak ({e.source})"
    return v * 1e12, f"{e.label} {dtype} {v} TFLOP/s: {e.source}"
