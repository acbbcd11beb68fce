#!/usr/bin/env python3
"""The CUDA kernels are compiled for the architectures the build was asked for.

Reads PBLLM_CUDA_ARCH_LIST (Torch's syntax, e.g. "8.0;8.6;8.9;9.0+PTX") from
BUILD_DIR/CMakeCache.txt and checks that every nvcc command in
BUILD_DIR/compile_commands.json carries exactly its -gencode flags: machine
code (code=sm_XY) for each entry and PTX (code=compute_XY) for the +PTX ones.
Exit 77 (skipped) for a build without the CUDA kernels.
    check_cuda_arch.py BUILD_DIR
"""
import json
import re
import sys
from pathlib import Path

build = Path(sys.argv[1])
cache = (build / "CMakeCache.txt").read_text()
enabled = re.search(r"^PBLLM_CUDA:BOOL=(\w+)$", cache, re.M)
archs = re.search(r"^PBLLM_CUDA_ARCH_LIST:STRING=(.*)$", cache, re.M)
if not enabled or enabled.group(1).upper() not in ("ON", "1", "TRUE") or not archs:
    print("skipped: a build without the CUDA kernels")
    sys.exit(77)

expected = set()
for entry in archs.group(1).replace(" ", ";").split(";"):
    if not entry:
        continue
    number = entry.removesuffix("+PTX").replace(".", "")
    expected.add(f"arch=compute_{number},code=sm_{number}")
    if entry.endswith("+PTX"):
        expected.add(f"arch=compute_{number},code=compute_{number}")

commands = [c for c in json.loads((build / "compile_commands.json").read_text()) if c["file"].endswith(".cu")]
failures = []
if not commands:
    failures.append("no .cu file in compile_commands.json")
for command in commands:
    text = command.get("command") or " ".join(command["arguments"])
    found = set(re.findall(r"-gencode[= ](arch=compute_\d+,code=(?:sm|compute)_\d+)", text))
    if found != expected:
        failures.append(f"{Path(command['file']).name}: {sorted(found)}, expected {sorted(expected)}")
for failure in failures:
    print("FAIL", failure)
print(f"{len(commands)} CUDA files, gencode {sorted(expected)}: {'ok' if not failures else 'FAILED'}")
sys.exit(1 if failures else 0)
