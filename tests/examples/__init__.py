"""Tests of the examples and of the data they run on."""
