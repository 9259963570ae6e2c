"""moto's server, with the three things real ECR does that moto alone cannot.

The stack's registry is a separate process that moto knows nothing of: moto's ECR never
sees a push. Three answers are therefore patched here, each as ECR gives it:

* ``GetAuthorizationToken`` says when its token expires (twelve hours on); moto's always
  says 2015-01-01. With that, no login could ever be reused on the stand-in and the
  suite's fast path (no AWS call when docker's login is still good) could never run.
* ``BatchDeleteImage`` of a tag that moto does not know, but the registry holds, removes
  that tag from the registry and keeps the image under its other tags, as ECR does (the
  release removes its candidate tag this way). The registry's own API can only delete a
  manifest, so the other tags are put back at once.
* ``DescribeImageScanFindings`` of an image moto does not know, but the registry holds,
  answers as ECR with scan on push: a COMPLETE scan without findings when the repository
  scans on push, ``ScanNotFoundException`` when it does not.

Everything else is moto's own. Run as ``python moto_ecr.py -H HOST -p PORT`` (moto_server's
own arguments); ``ECR_E2E_STACK_DIR`` names the stack's state directory (its registry's
address, CA and password are read from there at each call: a test may change them).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from moto.core.responses import ActionResult
from moto.ecr.exceptions import ImageNotFoundException, ScanNotFoundException
from moto.ecr.responses import ECRResponse
from moto.server import main

from ecr_release.outside.sandbox_api import Mirror, RegistryLink

TOKEN_HOURS = 12
_moto_token = ECRResponse.get_authorization_token
_moto_delete = ECRResponse.batch_delete_image
_moto_findings = ECRResponse.describe_image_scan_findings


def _link() -> RegistryLink:
    """The stack's registry: TLS with the stack's CA, on its ECR-like host name, with the
    password a test may have changed (read at each call)."""
    state_dir = Path(os.environ["ECR_E2E_STACK_DIR"])
    state = json.loads((state_dir / "stack.json").read_text())
    return RegistryLink(
        f"{state['registry_host']}:443",
        state["registry_password"],
        user=state["registry_user"],
        tls=ssl.create_default_context(cafile=state["ca_path"]),
    )


def get_authorization_token(self: ECRResponse) -> Any:
    answer = _moto_token(self)
    expires = datetime.now(UTC) + timedelta(hours=TOKEN_HOURS)
    result: dict[str, list[dict[str, Any]]] = answer.result  # type: ignore[assignment]
    for data in result["authorizationData"]:
        data["expiresAt"] = expires
    return answer


def batch_delete_image(self: ECRResponse) -> Any:
    answer = _moto_delete(self)
    result: dict[str, list[dict[str, Any]]] = answer.result  # type: ignore[assignment]
    name = self._get_param("repositoryName")
    unknown = [
        failure
        for failure in result["failures"]
        if failure.get("failureCode") == "ImageNotFound"
        and set(failure.get("imageId", {})) == {"imageTag"}
    ]
    if not unknown:
        return answer
    link = _link()
    listing = link.listing(name)
    for failure in unknown:
        tag = failure["imageId"]["imageTag"]
        if tag not in listing:
            continue
        digest = listing[tag].digest
        Mirror(link, "").delete_images(name, [{"imageTag": tag}], listing)
        result["failures"].remove(failure)
        result["imageIds"].append({"imageTag": tag, "imageDigest": digest})
    return answer


def describe_image_scan_findings(self: ECRResponse) -> Any:
    try:
        return _moto_findings(self)
    except ImageNotFoundException:
        name, image_id = self._get_param("repositoryName"), self._get_param("imageId")
        reference = image_id.get("imageDigest") or image_id.get("imageTag")
        manifest = _link().manifest(name, reference) if reference else None
        if manifest is None:
            raise
    repository = self.ecr_backend.repositories[name]
    scanning = repository.image_scanning_configuration
    if not (isinstance(scanning, dict) and scanning.get("scanOnPush")):
        raise ScanNotFoundException(json.dumps(image_id), name, repository.registry_id)
    return ActionResult(
        {
            "registryId": repository.registry_id,
            "repositoryName": name,
            "imageId": {"imageDigest": manifest.digest},
            "imageScanStatus": {
                "status": "COMPLETE",
                "description": "The scan was completed successfully.",
            },
            "imageScanFindings": {
                "imageScanCompletedAt": datetime.now(UTC),
                "findings": [],
                "findingSeverityCounts": {},
            },
        }
    )


if __name__ == "__main__":
    ECRResponse.get_authorization_token = get_authorization_token  # type: ignore[method-assign]
    ECRResponse.batch_delete_image = batch_delete_image  # type: ignore[method-assign]
    ECRResponse.describe_image_scan_findings = describe_image_scan_findings  # type: ignore

    main(sys.argv[1:])
