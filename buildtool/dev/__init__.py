"""The development wing: a local run of a compiled pipeline and a local training platform."""
