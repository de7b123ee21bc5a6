"""Exports of a stored run to other tools."""
