"""Fixtures of the eval tests: the synthetic SPair-71k and HPatches layouts (tests/eval/pair_data.py)."""

from tests.eval.pair_data import hpatches_root, spair_root  # noqa: F401 - fixtures
