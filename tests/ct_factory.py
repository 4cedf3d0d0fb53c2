"""Test helpers that write real CT files; they live in the library (:mod:`ldct_clip.io.synthetic`)."""

from ldct_clip.io.synthetic import *  # noqa: F401,F403
