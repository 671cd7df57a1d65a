"""``make test-mutants`` stays runnable: every mutant's text is still in its source file exactly once,
and every test named to catch it exists (a refactor otherwise leaves the list stale unnoticed, as
the mutation run is not part of ``make test``)."""
import re

import pytest

from mutants import MUTANTS, ROOT


@pytest.mark.parametrize('mutant', MUTANTS, ids=lambda m: m.name)
def test_mutant_text_and_tests_exist(mutant):
    assert (ROOT / mutant.file).read_text().count(mutant.old) == 1, f'{mutant.file} changed: update tests/mutants.py'
    for test in mutant.tests:
        path, _, name = test.partition('::')
        assert re.search(rf'^def {re.escape(name)}\(', (ROOT / path).read_text(), re.M), test
