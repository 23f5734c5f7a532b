"""python -m fastrnn: what this build is (paste it into a bug report)."""
import sys

from .info import main

sys.exit(main())
