"""moto's server, with ECR login tokens that expire twelve hours after they are made.

Real ECR's ``GetAuthorizationToken`` says when its token expires (twelve hours on);
moto's always says 2015-01-01. With that, no login could ever be reused on the stand-in
and the suite's fast path (no AWS call when docker's login is still good) could never
run: the one difference from ECR that this launcher removes. Run as
``python moto_ecr.py -H HOST -p PORT`` (moto_server's own arguments).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.ecr.responses import ECRResponse
from moto.server import main

TOKEN_HOURS = 12
_moto_token = ECRResponse.get_authorization_token


def get_authorization_token(self: ECRResponse) -> Any:
    answer = _moto_token(self)
    expires = datetime.now(UTC) + timedelta(hours=TOKEN_HOURS)
    result: dict[str, list[dict[str, Any]]] = answer.result  # type: ignore[assignment]
    for data in result["authorizationData"]:
        data["expiresAt"] = expires
    return answer


if __name__ == "__main__":
    ECRResponse.get_authorization_token = get_authorization_token  # type: ignore[method-assign]
    main(sys.argv[1:])
