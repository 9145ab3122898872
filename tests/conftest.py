"""Suite-wide hooks: the long tests run first.

`make test` runs the suite on two workers with work stealing (``--dist worksteal``): each
takes half of the collection and an idle one steals half of the other's pending tests. With
the tests marked ``heavy`` (tens of seconds each) at the front, what is left at the end to
share out is short tests, so the workers finish together instead of one waiting on a long
test collected last.
"""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A stable sort: file order is kept within the heavy tests and within the others.
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
