"""The pipeline parameters that carry the training platform's credentials: one source for `run` and `submit`."""

from __future__ import annotations

#: Parameters whose values are never shown.
SECRET_PARAMETERS = ("access_key", "secret_key")
#: Parameters that may come from the environment instead of the command line.
ENV_PARAMETERS = {"access_key": "PLATFORM_ACCESS_KEY", "secret_key": "PLATFORM_SECRET_KEY"}
