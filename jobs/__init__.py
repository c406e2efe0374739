"""Ray entry points: the style-transfer batch job, the optimizer study and the `stylize` command."""

import os

# Keep TensorFlow's C++ start-up notices out of job logs; warnings and errors
# still show. Must be set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
