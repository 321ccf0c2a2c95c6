"""Old home of the fake servers, now in :mod:`tests.support`: ``tests.fakes.openai_server``
still runs as ``python -m tests.fakes.openai_server`` (the synthesis benchmark starts it so)."""
