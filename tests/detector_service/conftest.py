"""The detector's tests decode through detector_service.service, which carries a Pillow 13 shim (see there)."""

import detector_service.service  # noqa: F401
