"""Read the applied dictionary steps out of `DatabaseModel.ModelData` -- an inference.

SuperOffice does not publish the format of `ModelData`. A third-party tool
(AnthonyYates/SuperOfficeGenerator, `websrc/lib/db-model.ts`) decodes the database model served by
SuperOffice's Web API as deflate-raw compressed JSON holding
`DictionarySteps: [{Name, StepNumber, State, Description}]` and `Tables`. That the `ModelData`
column holds the same bytes is our inference (SUPEROFFICE.md, "DatabaseModel.ModelData
(inference)"): we try raw deflate, zlib and gzip, parse the JSON, and use the steps as evidence
when that works. When it does not, the reading says why and callers go on without it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

INFERRED = " (inferred: ModelData format is not published)"
_NOT_APPLIED = ("fail", "pending", "notapplied", "not applied")
_METHODS = (("raw deflate", -15), ("zlib", 15), ("gzip", 31))


@dataclass(frozen=True)
class DictionaryStep:
    name: str
    step_number: int
    state: str
    description: str

    def applied(self) -> bool:
        state = self.state.casefold()
        return not any(word in state for word in _NOT_APPLIED)


INVITATION_STEPS: list[DictionaryStep] = [
    DictionaryStep(
        "invitation", 1, "Applied", "Adds support for invitations (iCal) leading to appointments"
    ),
    DictionaryStep("invitation", 2, "Applied", "Invitation organizer support"),
    DictionaryStep(
        "invitation",
        3,
        "Applied",
        "Set preference 'Diary sync active' if Infobridge synchronizer seem to be in use",
    ),
    DictionaryStep("invitation", 4, "Applied", "Invitation recurrence support"),
    DictionaryStep("invitation", 5, "Applied", "Adds original_start_date to appointment"),
]
SUPEROFFICE_STEP_45 = DictionaryStep(
    "SuperOffice", 45, "Applied", "Adds cautionWarning to appointment"
)
_RELEVANT = [(s.name.casefold(), s.step_number) for s in [*INVITATION_STEPS, SUPEROFFICE_STEP_45]]
_STEP_3_ROLE = "SuperOffice sets 'Diary sync active' when the synchronizer seems in use"


@dataclass(frozen=True)
class ModelDataReading:
    decoded: bool
    how: str
    steps: list[DictionaryStep]
    problem: str

    def relevant_steps(self) -> list[DictionaryStep]:
        found = [s for s in self.steps if (s.name.casefold(), s.step_number) in _RELEVANT]
        return sorted(found, key=lambda s: (s.name.casefold(), s.step_number))

    def invitation_step_3_ran(self) -> bool | None:
        if not self.decoded:
            return None
        return any(
            s.name.casefold() == "invitation" and s.step_number == 3 and s.applied()
            for s in self.steps
        )

    def evidence_lines(self) -> list[str]:
        if not self.decoded:
            return [
                f"ModelData could not be decoded ({self.problem}): no dictionary-step evidence; "
                f"invitation step 3 unknown (inferred format)"
            ]
        lines = [f"ModelData decoded ({self.how}): {len(self.steps)} dictionary steps{INFERRED}"]
        relevant = self.relevant_steps()
        for name, number in _RELEVANT:
            matches = [s for s in relevant if (s.name.casefold(), s.step_number) == (name, number)]
            label = f"{'SuperOffice' if name == 'superoffice' else name} step {number}"
            if not matches:
                lines.append(f"{label} not in the model{INFERRED}")
            for s in matches:
                described = f" '{s.description}'" if s.description else ""
                lines.append(f"{label}{described} {s.state}{INFERRED}")
        step_3 = [s for s in relevant if s.name.casefold() == "invitation" and s.step_number == 3]
        if self.invitation_step_3_ran():
            verdict = "has run"
        elif step_3:
            verdict = f"has not run (state {', '.join(repr(s.state) for s in step_3)})"
        else:
            verdict = "has not run"
        lines.append(f"invitation step 3 ({_STEP_3_ROLE}) {verdict}{INFERRED}")
        return lines


def _failed(problem: str) -> ModelDataReading:
    return ModelDataReading(decoded=False, how="", steps=[], problem=problem)


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes | str | None:
    """The decompressed bytes, "too large" when over max_bytes, None when not this format."""
    max_bytes = max(max_bytes, 0)  # max_length 0 would mean "no limit"
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(data, max_bytes + 1)
    except (zlib.error, ValueError, OverflowError):
        return None
    if len(out) > max_bytes:
        return "too large"
    return out if d.eof else None


def _get(obj: dict[str, Any], key: str) -> Any:
    return next((v for k, v in obj.items() if isinstance(k, str) and k.casefold() == key), None)


def _step(item: Any) -> DictionaryStep | None:
    if not isinstance(item, dict):
        return None
    name, number = _get(item, "name"), _get(item, "stepnumber")
    if isinstance(number, str):
        try:
            number = int(number)
        except ValueError:  # not a number, or too many digits
            return None
    if not isinstance(name, str) or not isinstance(number, int) or isinstance(number, bool):
        return None
    state, description = _get(item, "state"), _get(item, "description")
    return DictionaryStep(
        name=name,
        step_number=number,
        state="" if state is None else str(state),
        description=description if isinstance(description, str) else "",
    )


def _parse(raw: bytes) -> list[DictionaryStep] | str:
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "decompressed but not JSON"
    items = _get(doc, "dictionarysteps") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return "JSON without DictionarySteps"
    steps = [s for s in map(_step, items) if s is not None]
    return steps if steps else "DictionarySteps without usable steps"


def read_model_data(
    blob: bytes | bytearray | memoryview | str | None, *, max_bytes: int = 64 * 1024 * 1024
) -> ModelDataReading:
    """Decode ModelData as raw deflate, zlib or gzip JSON; never raises on bad input."""
    try:
        if blob is None:
            return _failed("ModelData is empty")
        data = blob.encode("latin-1") if isinstance(blob, str) else bytes(blob)
    except (UnicodeEncodeError, TypeError, ValueError):
        return _failed("ModelData is text that is not binary data")
    if not data:
        return _failed("ModelData is empty")
    problem = "not deflate/zlib/gzip data"
    for how, wbits in _METHODS:
        raw = _inflate(data, wbits, max_bytes)
        if isinstance(raw, str):
            return _failed(f"larger than the limit of {max_bytes} bytes when decompressed")
        if isinstance(raw, bytes):
            parsed = _parse(raw)
            if isinstance(parsed, list):
                return ModelDataReading(decoded=True, how=how, steps=parsed, problem="")
            if problem == "not deflate/zlib/gzip data":
                problem = f"{parsed} ({how})"
    return _failed(problem)


def encode_model_data(steps: list[DictionaryStep], tables: list[str] | None = None) -> bytes:
    """The inverse of read_model_data, for the demo database: JSON compressed as raw deflate."""
    doc = {
        "DictionarySteps": [
            {
                "Name": s.name,
                "StepNumber": s.step_number,
                "State": s.state,
                "Description": s.description,
            }
            for s in steps
        ],
        "Tables": [{"Name": t} for t in tables or []],
    }
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(json.dumps(doc).encode("utf-8")) + compressor.flush()
