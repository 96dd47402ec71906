"""Jobs for ``flowactors run`` in the CLI tests (``tests.cli._jobs:<name>``)."""

from __future__ import annotations

from flowactors import StreamExecutionEnvironment
from tests.monitoring._jobs import KeepingSink


def partly_bounded(env: StreamExecutionEnvironment) -> None:
    """A finite collection next to an endless generator: once the collection's source
    has finished, the job can no longer take a savepoint."""
    finite = env.from_collection([1, 2, 3], name="Three")
    endless = env.from_generator(lambda i: i, rate=200, name="Endless")
    finite.union(endless).map(lambda x: x + 1).sink_to(KeepingSink())
