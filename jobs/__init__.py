"""Ray entry points: the style-transfer batch job, the optimizer study and the `stylize` command."""

import os

# Keep TensorFlow's C++ start-up notices out of job logs; warnings and errors
# still show. Must be set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A Ray started here (no RAY_ADDRESS) binds to loopback: on Linux, Ray would
# otherwise pick the machine's network address even for a single-node run.
# Ray reads this at import, so it must be set before `import ray`.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
