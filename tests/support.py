"""Paths the tests share: the repository root and the test-support files beside this one."""

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
