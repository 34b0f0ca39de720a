"""mailboxes package."""
