"""Print a Raspberry-Pi-like ``/proc/cpuinfo`` for the CPU model qemu-user is emulating.

Run INSIDE the emulation (``QEMU_CPU=cortex-a72 qemu-aarch64-static -L ROOT python emulated_cpuinfo.py``);
``.ci/arm64.sh`` writes the output to ``ROOT/proc/cpuinfo``, which qemu's ``-L`` prefix then serves
to the emulated process in place of the host's file.

Why: qemu-user 7.2 (Debian bookworm) passes the HOST's x86 ``/proc/cpuinfo`` through to the guest.
The ``cpuinfo`` library inside LiteRT/XNNPACK parses that file on Linux/ARM to learn each core's
MIDR (implementer, part, variant, revision) and so its microarchitecture; from an x86 file it learns
nothing (and ai-edge-litert >= 2.2.0 then dereferences a null pointer while creating the interpreter).
A Pi's kernel writes an ARM file, so we give the emulated process one: the ``Features`` line is
decoded from the hardware capabilities (``AT_HWCAP``) that qemu really emulates for this model, and
the MIDR fields are those of qemu's model of the core (``target/arm/cpu64.c``).

Only the standard library is used (this runs with the device's bare install).
"""

from __future__ import annotations

import os
import struct
import sys

# qemu's MIDR_EL1 of each model: (implementer, variant, part, revision), and the Pi that has the core.
MODELS = {
    "cortex-a72": (0x41, 0x0, 0xD08, 3, "Raspberry Pi 4 Model B (emulated by qemu-user: cortex-a72)"),
    "cortex-a76": (0x41, 0x4, 0xD0B, 1, "Raspberry Pi 5 Model B (emulated by qemu-user: cortex-a76)"),
}

# Linux arm64 AT_HWCAP bit -> /proc/cpuinfo feature name (arch/arm64/kernel/cpuinfo.c, bits 0..31).
HWCAP_NAMES = ("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
               "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512",
               "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg")
AT_HWCAP = 16


def hwcap() -> int:
    """AT_HWCAP of this process, read from ``/proc/self/auxv`` (64-bit key/value pairs)."""
    with open("/proc/self/auxv", "rb") as f:
        data = f.read()
    for key, value in struct.iter_unpack("<QQ", data[: len(data) // 16 * 16]):
        if key == AT_HWCAP:
            return value
    raise SystemExit("emulated_cpuinfo: AT_HWCAP is not in /proc/self/auxv")


def cpuinfo_text(model: str, ncpu: int, caps: int) -> str:
    """``/proc/cpuinfo`` text in the layout of a 64-bit Raspberry Pi OS kernel."""
    impl, variant, part, rev, name = MODELS[model]
    feats = " ".join(n for bit, n in enumerate(HWCAP_NAMES) if caps >> bit & 1)
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {feats}\nCPU implementer\t: 0x{impl:02x}\n"
              f"CPU architecture: 8\nCPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\n"
              f"CPU revision\t: {rev}\n" for i in range(ncpu)]
    return "\n".join(blocks) + f"\nModel\t\t: {name}\n"


def main(argv) -> int:
    if len(argv) != 2 or argv[1] not in MODELS:
        print(f"usage: emulated_cpuinfo.py {{{'|'.join(MODELS)}}}  (run under qemu-aarch64 with QEMU_CPU set "
              f"to the same model)", file=sys.stderr)
        return 2
    if os.uname().machine != "aarch64":
        print(f"emulated_cpuinfo: expected to run under qemu-aarch64, found machine {os.uname().machine}",
              file=sys.stderr)
        return 2
    # cpuinfo (the library) reads the possible/present CPU lists from the host's /sys: list as many.
    sys.stdout.write(cpuinfo_text(argv[1], os.cpu_count() or 1, hwcap()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
