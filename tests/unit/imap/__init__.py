"""Tests of popvault.imap."""
