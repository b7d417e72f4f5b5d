"""DatabaseModel.ModelData: decoding real compressed bytes (an inferred format)."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setup_tool.model_data import (
    INVITATION_STEPS,
    SUPEROFFICE_STEP_45,
    DictionaryStep,
    ModelDataReading,
    encode_model_data,
    read_model_data,
)

ALL_STEPS = [
    DictionaryStep("SuperOffice", 44, "Applied", "Something earlier"),
    SUPEROFFICE_STEP_45,
    *INVITATION_STEPS,
    DictionaryStep("invitation", 6, "Applied", "A later invitation step"),
    DictionaryStep("Travel", 3, "Applied", "Not relevant"),
]


def model_json(steps: list[object], key: str = "DictionarySteps") -> bytes:
    return json.dumps({key: steps, "Tables": [{"Name": "appointment"}]}).encode("utf-8")


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def test_round_trip() -> None:
    blob = encode_model_data(ALL_STEPS, ["appointment", "invitation"])
    reading = read_model_data(blob)
    assert reading.decoded and reading.how == "raw deflate" and reading.problem == ""
    assert reading.steps == ALL_STEPS
    doc = json.loads(zlib.decompress(blob, -15))
    assert doc["Tables"] == [{"Name": "appointment"}, {"Name": "invitation"}]
    assert doc["DictionarySteps"][0] == {
        "Name": "SuperOffice",
        "StepNumber": 44,
        "State": "Applied",
        "Description": "Something earlier",
    }


@pytest.mark.parametrize(
    ("compress", "how"),
    [(raw_deflate, "raw deflate"), (zlib.compress, "zlib"), (gzip.compress, "gzip")],
)
def test_each_compression(compress: Callable[[bytes], bytes], how: str) -> None:
    payload = model_json([{"Name": "invitation", "StepNumber": 3, "State": 1}])
    reading = read_model_data(compress(payload))
    assert reading.decoded and reading.how == how
    assert reading.steps == [DictionaryStep("invitation", 3, "1", "")]


def test_input_kinds_bom_and_key_casing() -> None:
    payload = b"\xef\xbb\xbf" + json.dumps(
        {"dictionarySteps": [{"name": "Invitation", "stepNumber": "3", "state": "Applied"}]}
    ).encode("utf-8")
    blob = raw_deflate(payload)
    for given_blob in (blob, memoryview(blob), bytearray(blob), blob.decode("latin-1")):
        reading = read_model_data(given_blob)
        assert reading.decoded, reading.problem
        assert reading.steps == [DictionaryStep("Invitation", 3, "Applied", "")]
        assert reading.invitation_step_3_ran() is True


@pytest.mark.parametrize(
    ("blob", "problem"),
    [
        (None, "ModelData is empty"),
        (b"", "ModelData is empty"),
        (memoryview(b""), "ModelData is empty"),
        (b"\x00\xffnot compressed at all\x13\x37" * 5, "not deflate/zlib/gzip data"),
        ("text with \u20ac", "not binary data"),
        (raw_deflate(b"<xml>not json</xml>"), "decompressed but not JSON"),
        (zlib.compress(b"\xff\xfe bad utf-8"), "decompressed but not JSON"),
        (gzip.compress(b'{"Tables": []}'), "JSON without DictionarySteps"),
        (raw_deflate(b"[1, 2, 3]"), "JSON without DictionarySteps"),
        (raw_deflate(model_json([{"Name": "x"}, 5, "y"])), "without usable steps"),
        (raw_deflate(model_json([{"Name": "x", "StepNumber": "\u00b2"}])), "without usable"),
        (raw_deflate(model_json([{"Name": "x", "StepNumber": "9" * 5000}])), "without usable"),
        (raw_deflate(model_json([{"Name": "x", "StepNumber": 2.5}])), "without usable"),
        (raw_deflate(b'{"DictionarySteps": [' + b"9" * 5000 + b"]}"), "not JSON"),
        (raw_deflate(b"[" * 100_000), "decompressed but not JSON"),
        (zlib.compress(model_json([])[:-3]), "decompressed but not JSON"),
        (zlib.compress(model_json([{"Name": "invitation", "StepNumber": 3}]))[:-6], "not deflate"),
    ],
)
def test_not_decoded(blob: bytes | bytearray | memoryview | str | None, problem: str) -> None:
    reading = read_model_data(blob)
    assert not reading.decoded
    assert reading.how == "" and reading.steps == []
    assert problem in reading.problem
    assert reading.invitation_step_3_ran() is None
    assert reading.relevant_steps() == []
    [line] = reading.evidence_lines()
    assert line.startswith(f"ModelData could not be decoded ({reading.problem})")
    assert "inferred" in line and "step 3 unknown" in line


def test_decompression_bomb_refused() -> None:
    bomb = raw_deflate(b" " * 200_000)
    assert len(bomb) < 1_000
    reading = read_model_data(bomb, max_bytes=10_000)
    assert not reading.decoded
    assert "larger than the limit" in reading.problem
    # Exactly at the limit is fine, one byte over is not.
    payload = model_json([{"Name": "invitation", "StepNumber": 1, "State": "Applied"}])
    assert read_model_data(raw_deflate(payload), max_bytes=len(payload)).decoded
    over = read_model_data(raw_deflate(payload), max_bytes=len(payload) - 1)
    assert "larger than the limit" in over.problem
    assert "larger than the limit" in read_model_data(bomb, max_bytes=0).problem
    assert "larger than the limit" in read_model_data(bomb, max_bytes=-5).problem


def test_relevant_steps_filter_and_sort() -> None:
    shuffled = [ALL_STEPS[i] for i in (7, 3, 0, 8, 5, 1, 2, 6, 4)]
    assert sorted(shuffled, key=repr) == sorted(ALL_STEPS, key=repr)
    other_case = DictionaryStep("SUPEROFFICE", 45, "Applied", "")
    reading = read_model_data(encode_model_data([*shuffled, other_case]))
    relevant = reading.relevant_steps()
    assert [(s.name.casefold(), s.step_number) for s in relevant] == [
        ("invitation", 1),
        ("invitation", 2),
        ("invitation", 3),
        ("invitation", 4),
        ("invitation", 5),
        ("superoffice", 45),
        ("superoffice", 45),
    ]
    assert SUPEROFFICE_STEP_45 in relevant and other_case in relevant


def reading_with(*steps: DictionaryStep) -> ModelDataReading:
    return read_model_data(encode_model_data([SUPEROFFICE_STEP_45, *steps]))


@pytest.mark.parametrize(
    ("state", "ran"),
    [
        ("Applied", True),
        ("Completed", True),
        ("2", True),
        ("", True),
        ("Failed", False),
        ("StepFailed", False),
        ("Pending", False),
        ("NotApplied", False),
        ("not applied", False),
    ],
)
def test_invitation_step_3_state(state: str, ran: bool) -> None:
    reading = reading_with(DictionaryStep("invitation", 3, state, "x"))
    assert reading.invitation_step_3_ran() is ran
    last = reading.evidence_lines()[-1]
    assert last.startswith("invitation step 3 (")
    assert ("has run" in last) is ran
    if not ran:
        assert f"has not run (state '{state}')" in last


def test_invitation_step_3_missing() -> None:
    reading = reading_with(*INVITATION_STEPS[:2], DictionaryStep("other", 3, "Applied", ""))
    assert reading.invitation_step_3_ran() is False
    assert reading.evidence_lines()[-1].startswith("invitation step 3 (")
    assert "has not run" in reading.evidence_lines()[-1]
    assert read_model_data(b"junk").invitation_step_3_ran() is None


def test_evidence_lines_decoded() -> None:
    reading = read_model_data(encode_model_data(ALL_STEPS))
    lines = reading.evidence_lines()
    assert lines[0] == (
        "ModelData decoded (raw deflate): 9 dictionary steps"
        " (inferred: ModelData format is not published)"
    )
    assert all("inferred" in line for line in lines)
    text = "\n".join(lines)
    assert (
        "invitation step 1 'Adds support for invitations (iCal) leading to appointments' Applied"
        in text
    )
    assert "SuperOffice step 45 'Adds cautionWarning to appointment' Applied" in text
    assert "has run" in lines[-1] and "Diary sync active" in lines[-1]
    missing = reading_with(INVITATION_STEPS[0]).evidence_lines()
    assert any(line.startswith("invitation step 4 not in the model") for line in missing)


def test_constants() -> None:
    assert [s.step_number for s in INVITATION_STEPS] == [1, 2, 3, 4, 5]
    assert {s.name for s in INVITATION_STEPS} == {"invitation"}
    assert {s.state for s in INVITATION_STEPS} == {"Applied"}
    assert INVITATION_STEPS[2].description == (
        "Set preference 'Diary sync active' if Infobridge synchronizer seem to be in use"
    )
    expected = DictionaryStep("SuperOffice", 45, "Applied", "Adds cautionWarning to appointment")
    assert expected == SUPEROFFICE_STEP_45


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_never_raises_on_arbitrary_bytes(blob: bytes) -> None:
    for candidate in (blob, raw_deflate(blob), zlib.compress(blob), gzip.compress(blob)):
        reading = read_model_data(candidate, max_bytes=4096)
        assert reading.decoded is (reading.problem == "")
        assert reading.evidence_lines()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
STEP_LIKE = st.dictionaries(
    st.sampled_from(["Name", "name", "StepNumber", "stepNumber", "State", "Description", "$ref"]),
    JSON_VALUES | st.sampled_from(["invitation", "3", 3, True]),
)


@given(JSON_VALUES, st.lists(STEP_LIKE, max_size=5))
def test_never_raises_on_arbitrary_json(doc: object, steps: list[dict[str, object]]) -> None:
    for wrapped in (doc, {"DictionarySteps": doc}, {"dictionarysteps": [doc, *steps]}):
        reading = read_model_data(raw_deflate(json.dumps(wrapped).encode("utf-8")))
        assert reading.decoded is (reading.problem == "")
        assert all(isinstance(s.step_number, int) for s in reading.steps)
        reading.relevant_steps()
        assert reading.evidence_lines()
