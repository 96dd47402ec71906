"""Helpers the tests share (never imported from one test module by another)."""
