"""The operations of a processed job, in its `image.processed` view.

imageproc used to publish one `operation.applied` event per operation; now its reply lists
them and the runner records them as the steps of `image.processed`, one document for the
whole computation. The view keeps what those documents said, one activity per operation:

- `imagemesh:event/<processed id>/operation/<index>`, of `prov:type` `operation.applied`
  (as the activities of the documents recorded before, so both render alike), with the
  operation, its index, parameters as applied, duration, attempt and, for `info`
  operations, the image at that point; associated with imageproc (its version from the
  engine that computed the output), when the event names it;
- each operation used the image before it (the job's input for the first, else the
  intermediate image the previous one generated: `.../intermediate/<index>`, an entity
  never stored), and the computation (`image.processed`) used the last one to encode and
  store the output, which it generated and derived from the input.

imageproc does not say when each operation ran, only how long it took: the operation
activities have no times (their duration is an attribute); they happened within the
computation's own start and end.
"""

from __future__ import annotations

import re
from typing import Any

from messaging.events import ImageProcessed, StepTiming

from .provterms import entity_id, json_literal, qualified_name

OPERATION_TYPE = "operation.applied"
_IMAGEPROC = re.compile(r"(?:^|\s)imagemesh-imageproc/(\S+)")


def add_operations(
    view: dict[str, Any], event_id: str, activity: str, event: ImageProcessed
) -> None:
    """Add each applied operation, the intermediates between them and imageproc to the
    processed event's `view` (whose activity is `activity`)."""
    if not event.steps:
        return
    agent = _imageproc_agent(view, event.engine)
    before = entity_id(event.input.sha256)
    for index, step in enumerate(event.steps):
        operation = f"{activity}/operation/{index}"
        view["activity"][operation] = _attributes(event, index, step)
        made = f"{activity}/intermediate/{index}"
        view.setdefault("entity", {})[made] = {
            "prov:type": qualified_name("imagemesh:IntermediateImage"),
            "imagemesh:after_operation": index,
        }
        key = f"{event_id}/op{index}"
        view.setdefault("used", {})[f"_:used/{key}"] = {
            "prov:activity": operation,
            "prov:entity": before,
        }
        view.setdefault("wasGeneratedBy", {})[f"_:gen/{key}"] = {
            "prov:entity": made,
            "prov:activity": operation,
        }
        if agent:
            view["wasAssociatedWith"][f"_:assoc/{key}"] = {
                "prov:activity": operation,
                "prov:agent": agent,
            }
        before = made
    view["used"][f"_:used/{event_id}/encoded"] = {
        "prov:activity": activity,
        "prov:entity": before,
        "prov:role": qualified_name("imagemesh:encoded"),
    }


def _attributes(event: ImageProcessed, index: int, step: StepTiming) -> dict[str, Any]:
    """What an `operation.applied` activity said of the operation."""
    attributes: dict[str, Any] = {
        "prov:type": OPERATION_TYPE,
        "imagemesh:job": event.job_id,
        "imagemesh:operation": step.op,
        "imagemesh:index": index,
        "imagemesh:params": json_literal(step.params),
        "imagemesh:duration_ms": step.duration_ms,
        "imagemesh:attempt": event.attempt or 1,
    }
    if step.info:
        attributes["imagemesh:info"] = json_literal(step.info)
    return attributes


def _imageproc_agent(view: dict[str, Any], engine: str | None) -> str | None:
    """imageproc, at the version the engine names, as an agent of the view (or None when
    the event does not say: recorded before it did)."""
    match = _IMAGEPROC.search(engine or "")
    if match is None:
        return None
    version = match.group(1)
    agent = f"imagemesh:agent/imageproc/{version}"
    view["agent"][agent] = {
        "prov:type": qualified_name("prov:SoftwareAgent"),
        "imagemesh:service": "imageproc",
        "imagemesh:version": version,
    }
    return agent
