"""Tests of popvault.mailboxes and popvault.app.metadata."""
