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
