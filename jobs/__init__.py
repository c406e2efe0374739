"""Ray entry points: the style-transfer batch job and its command-line interface."""
