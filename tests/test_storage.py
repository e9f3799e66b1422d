"""Outputs appear whole or not at all."""

import pytest

from sipf.errors import DataError
from sipf.storage import atomic_path, read_json, read_parquet, write_json, write_parquet


def test_parquet_round_trip(tmp_path):
    rows = [{"id": "a", "x": 1}, {"id": "b", "x": 2}]
    write_parquet(rows, tmp_path / "out" / "t.parquet")
    assert read_parquet(tmp_path / "out" / "t.parquet", required=["id"]) == rows
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t.parquet"]  # no temp left


def test_crash_mid_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("killed")
    assert read_json(target) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_directory_output_is_replaced_whole(tmp_path):
    out = tmp_path / "model"
    with atomic_path(out, directory=True) as tmp:
        (tmp / "old.bin").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(out, directory=True) as tmp:
            (tmp / "new.bin").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["old.bin"]
    with atomic_path(out, directory=True) as tmp:
        (tmp / "new.bin").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_read_errors_name_file_and_column(tmp_path):
    with pytest.raises(DataError, match="missing.parquet: no such file"):
        read_parquet(tmp_path / "missing.parquet")
    write_parquet([{"id": "a"}], tmp_path / "t.parquet")
    with pytest.raises(DataError, match="t.parquet: field 'prompt': missing column"):
        read_parquet(tmp_path / "t.parquet", required=["id", "prompt"])
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet: not a readable Parquet file"):
        read_parquet(tmp_path / "junk.parquet")


def test_a_stage_that_fails_after_its_first_output_leaves_none(tmp_path):
    from sipf.storage import outputs_together

    write_json({"v": 1}, tmp_path / "metrics.json")  # the previous run's
    with pytest.raises(RuntimeError):
        with outputs_together(tmp_path / "a.parquet", tmp_path / "metrics.json"):
            write_parquet([{"x": 1}], tmp_path / "a.parquet")
            write_json({"v": 2}, tmp_path / "metrics.json")
            with atomic_path(tmp_path / "model", directory=True) as tmp:
                write_json({}, tmp / "config.json")  # inside a temporary dir: moves with it
            assert not (tmp_path / "a.parquet").exists()  # nothing in place yet
            raise RuntimeError("killed after writing everything but the last output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert read_json(tmp_path / "metrics.json") == {"v": 1}


def test_a_stage_that_succeeds_puts_every_output_in_place(tmp_path):
    from sipf.storage import outputs_together

    with outputs_together():
        write_parquet([{"x": 1}], tmp_path / "a.parquet")
        with atomic_path(tmp_path / "model", directory=True) as tmp:
            write_json({"v": 1}, tmp / "config.json")
        write_json({"v": 2}, tmp_path / "metrics.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "metrics.json", "model"]
    assert read_json(tmp_path / "model" / "config.json") == {"v": 1}


def test_a_killed_runs_temporaries_are_cleared_when_the_stage_runs_again(tmp_path):
    from sipf.storage import outputs_together

    (tmp_path / ".a.parquet.x1y2.tmp").mkdir()  # what kill -9 mid-write leaves
    (tmp_path / ".other.parquet.x1y2.tmp").mkdir()  # another output's: not ours to remove
    with outputs_together(tmp_path / "a.parquet"):
        write_parquet([{"x": 1}], tmp_path / "a.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.parquet.x1y2.tmp", "a.parquet"]


def test_an_unwritable_output_is_refused_before_any_work(tmp_path):
    from sipf.errors import OutputError
    from sipf.storage import outputs_together

    (tmp_path / "data").write_text("a file where a directory should be")
    ran = []
    with pytest.raises(OutputError, match="data/out.parquet: cannot write the output here"):
        with outputs_together(tmp_path / "data" / "out.parquet"):
            ran.append(True)
    assert ran == []


def test_read_table_checks_kinds_nulls_and_names_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sipf.storage import read_table

    schema = {"id": "str", "score": "float", "steps": "list[str]", "note": "str?"}
    good = {"id": ["a", "b"], "score": [1, 0.5], "steps": [["s"], []], "note": [None, "x"]}
    pq.write_table(pa.table(good), tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet", schema)[1] == {
        "id": "b", "score": 0.5, "steps": [], "note": "x"}
    for column, values, message in (
            ("score", ["1", "2"], "row 1: field 'score': expected a number, got string '1'"),
            ("id", ["a", None], "row 2: field 'id': null"),
            ("steps", ["s", "t"], "row 1: field 'steps': expected a list of text"),
            ("steps", [["s"], [None]], "row 2: field 'steps': a null inside the list")):
        pq.write_table(pa.table({**good, column: values}), tmp_path / "t.parquet")
        with pytest.raises(DataError, match=message):
            read_table(tmp_path / "t.parquet", schema)
