"""The runtime: actors, mailboxes, partitioning, operators, plan and executor (private)."""
