"""The extraction keeps freed memory in the process for the next batch (glibc)."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# In a fresh process (the setting is process-wide, and other tests may have made it already):
# is a 64 MB block, allocated before or after an extraction of a few images, in the heap
# (reused once freed) or a mapping of its own (given back, faulted in anew)?
SCRIPT = """
import sys
import numpy as np

def in_heap():
    block = np.empty(64 << 20, np.uint8)
    address = block.ctypes.data
    for line in open("/proc/self/maps"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return line.rstrip().endswith("[heap]")
    raise AssertionError("no mapping holds the block")

before = in_heap()
if sys.argv[1] == "extract":
    import torch
    from convdp.extract import extract_activations
    from convdp.models import DigitNet
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8)
    extract_activations(DigitNet(num_classes=3, in_channels=1).eval(), images, ["relu1"],
                        sys.argv[2], mean=[0.5], std=[0.25], fingerprint={"t": 1},
                        progress=False)
else:
    from convdp.allocator import keep_freed_memory
    assert keep_freed_memory() is True
print(before, in_heap())
"""


def _heap_before_and_after(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_large_blocks_stay_in_the_heap_once_set():
    assert _heap_before_and_after("set") == ["False", "True"]


def test_an_extraction_sets_it(tmp_path):
    assert _heap_before_and_after("extract", str(tmp_path / "a.zarr")) == ["False", "True"]
