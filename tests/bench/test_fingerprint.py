"""Device fingerprint parsing."""

from headpose.benchmarks.fingerprint import cpu_model, fingerprint, package_version
from headpose.benchmarks.schema import validate

X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
PI5 = ("processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n"
       "Revision\t: d04170\nSerial\t\t: 1234\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")


def test_cpu_model_from_cpuinfo_text():
    assert cpu_model(X86) == "AMD EPYC 7B13"
    assert cpu_model(PI5) == "Raspberry Pi 5 Model B Rev 1.0"
    assert cpu_model("") != ""


def test_fingerprint_of_this_machine_is_a_valid_device():
    fp = fingerprint("bench-test")
    assert fp["name"] == "bench-test" and fp["hostname"] and fp["cores"] >= 1
    assert fp["packages"]["numpy"] == package_version("numpy")
    result = {"schema": "headpose-bench", "schema_version": 1, "device": fp,
              "model_latency": [{"model": "m", "precision": "fp32", "format": "tflite", "runtime": "litert",
                                 "threads": 1, "stats": {"p50": 1.0, "p99": 2.0}}]}
    assert validate(result) == []
    assert fingerprint()["name"] == fp["hostname"]
