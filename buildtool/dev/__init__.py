"""The development wing: a local run of a compiled pipeline and a local training platform.

The defaults the `buildtool platform` options show live here, so that the CLI can
print them without importing the server (and its HTTP and multipart libraries).
"""

DEFAULT_TOKEN_TTL = 3600.0  # seconds a platform login token stays valid
DEFAULT_WORKERS = 16  # connections the local platform serves at once
DEFAULT_SAMPLES = 200  # samples in a generated training dataset
