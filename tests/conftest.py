"""Settings of the test process itself (the servers under test are separate processes)."""

from __future__ import annotations

import os

# On a host with a GPU, TensorFlow in THIS process (the tests build their tiny Keras
# models here) would map nearly all GPU memory at its first op and leave none to the
# servers under test. Memory growth, for the test process: the GPU suite
# (tests/integration/test_triggers_gpu.py) starts its servers without this variable, so
# what it checks is the server's own GPU memory setting.
TEST_PROCESS_GPU_GROWTH_VARIABLE = "TF_FORCE_GPU_ALLOW_GROWTH"
os.environ.setdefault(TEST_PROCESS_GPU_GROWTH_VARIABLE, "true")
