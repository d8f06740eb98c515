"""`python -m docvlm.synth ...` (see docvlm/synth/cli.py)."""

import sys

from docvlm.synth.cli import main

sys.exit(main())
