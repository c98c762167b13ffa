"""Sending signed transactions exactly once, for every key that sends."""
