import pydantic
import pytest

from rulewise.errors import RulewiseError
from rulewise.fileio import format_loc, load_document, load_jsonl_models


class Item(pydantic.BaseModel):
    prompt: str
    label: str


def test_jsonl_errors_name_line_and_field(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"prompt": "a", "label": "x"}\n\n{"prompt": "b"}\n')
    with pytest.raises(RulewiseError) as info:
        load_jsonl_models(Item, path)
    assert (info.value.line, info.value.field) == (3, "label")
    assert str(info.value) == f"{path}:3: field 'label': Field required"


@pytest.mark.parametrize(
    ("text", "message"), [('{"prompt": "a",\n', "invalid JSON"), ('["a"]\n', "must be a JSON object")]
)
def test_jsonl_syntax_errors(tmp_path, text, message):
    path = tmp_path / "items.jsonl"
    path.write_text('{"prompt": "a", "label": "x"}\n' + text)
    with pytest.raises(RulewiseError, match=message) as info:
        load_jsonl_models(Item, path)
    assert info.value.line == 2


def test_jsonl_reads_every_item(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"prompt": "a", "label": "x"}\n{"prompt": "ü", "label": "y"}\n')
    assert [i.prompt for i in load_jsonl_models(Item, path)] == ["a", "ü"]


def test_line_lookup_follows_nested_paths(tmp_path):
    path = tmp_path / "doc.yaml"
    path.write_text("a:\n  b:\n    - x\n    - y: 1\n      z: 2\n")
    doc = load_document(path)
    assert doc.line_of(("a", "b", 1, "z")) == 5
    assert doc.line_of(("a", "b", 7)) == 3  # a missing item falls back to its list, which starts on line 3
    assert doc.line_of(()) == 1


def test_format_loc():
    assert format_loc(("rules", 3, "allowed")) == "rules[3].allowed"
    assert format_loc((0, "x")) == "[0].x"


def test_records_survive_a_kill_at_every_byte_of_a_multibyte_line(tmp_path):
    """A write cut anywhere in a line of 'é' and '✓' loses that line only, and appending goes on cleanly."""
    from rulewise.fileio import append_record, read_records

    whole = tmp_path / "whole.jsonl"
    append_record(whole, {"id": 1, "text": "première"})
    first = whole.read_bytes()
    append_record(whole, {"id": 2, "text": "déjà vu ✓✓"})
    second = whole.read_bytes()[len(first) :]
    for cut in range(len(second)):
        path = tmp_path / f"cut{cut}.jsonl"
        path.write_bytes(first + second[:cut])
        assert read_records(path) == [{"id": 1, "text": "première"}]
        assert path.read_bytes() == first  # truncated back to the last complete line, nothing rewritten
        append_record(path, {"id": 2, "text": "again"})
        assert [r["id"] for r in read_records(path)] == [1, 2]


def test_jsonl_that_is_not_utf8_names_the_line(tmp_path):
    from rulewise.errors import RulewiseError
    from rulewise.fileio import iter_jsonl

    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"a": 1}\n' + '{"a": "café"}\n'.encode("latin-1"))
    with pytest.raises(RulewiseError, match=r"latin1.jsonl:2: not UTF-8 text .*re-save the file as UTF-8"):
        list(iter_jsonl(path))
