"""The peak-FLOP table matches the exact model names NVML reports, never a neighbour's by substring."""

import pytest

from milestones.harness.measure.peaks import PEAKS, lookup, peak_flops

# Real NVML / torch.cuda.get_device_name strings and the datasheet column each must get.
REAL_NAMES = [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100-SXM4-40GB", "A100"), ("NVIDIA A100-PCIE-40GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"),
    ("Tesla V100-SXM2-16GB", "V100 SXM2"), ("Tesla V100-PCIE-32GB", "V100 PCIe"), ("Tesla T4", "T4"),
    ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"), ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"),
]


@pytest.mark.parametrize("name,label", REAL_NAMES)
def test_real_nvml_names_get_their_own_column(name, label):
    e = lookup(name)
    assert e is not None and e.label == label
    assert lookup("  " + name.upper() + " ") is e  # case and surrounding blanks do not matter


@pytest.mark.parametrize("name,dtype,tflops", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4), ("NVIDIA H100 PCIe", "bfloat16", 756.0),
    ("NVIDIA H100 NVL", "bfloat16", 835.5), ("NVIDIA L4", "bfloat16", 121.0), ("NVIDIA L40S", "bfloat16", 362.05),
    ("NVIDIA A100-SXM4-80GB", "float16", 312.0), ("Tesla V100-SXM2-16GB", "float16", 125.0),
    ("Tesla V100-PCIE-32GB", "float16", 112.0), ("Tesla T4", "float16", 65.0),
    ("NVIDIA GeForce RTX 4090", "float32", 82.6), ("NVIDIA H200", "bfloat16", 989.4),
    ("NVIDIA H200 NVL", "bfloat16", 835.5),
])
def test_peak_figures_and_source(name, dtype, tflops):
    v, src = peak_flops(name, dtype)
    assert v == pytest.approx(tflops * 1e12)
    assert lookup(name).label in src and ("datasheet" in src or "whitepaper" in src)


@pytest.mark.parametrize("name", [
    "NVIDIA L40", "L40S", "L4", "NVIDIA L4 Super", "H100", "NVIDIA H100", "NVIDIA H100 NVL2", "Tesla V100S-PCIE-32GB",
    "NVIDIA A10", "NVIDIA A100X", "NVIDIA GeForce RTX 4090 D", "Tesla T40", "Some CPU", "", None,
])
def test_unknown_or_near_names_are_unknown(name):
    assert lookup(name) is None
    v, why = peak_flops(name, "float32")
    assert v is None and "pass --peak-tflops" in why
    if name:
        assert "unknown" in why and repr(name) in why


def test_no_listed_peak_for_a_dtype_says_why():
    v, why = peak_flops("Tesla V100-SXM2-16GB", "bfloat16")
    assert v is None and "V100 SXM2 has no listed bfloat16 peak" in why


def test_user_peak_wins_even_for_unknown_devices():
    assert peak_flops("NVIDIA L40", "float32", user_tflops=100) == (100e12, "user-supplied --peak-tflops")


def test_each_name_in_one_entry_only():
    names = [n.lower() for e in PEAKS for n in e.names]
    assert len(names) == len(set(names))
