import sys

from ldct_clip.cli import main

sys.exit(main())
