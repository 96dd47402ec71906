"""The user-facing layer: environment, streams, function classes, built-in sources and sinks."""
