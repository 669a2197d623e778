import h5py
import numpy as np
import pandas as pd
import pytest

from hepad_cli.data.toptagging_format import LayoutError, column_names, count_jets, iter_chunks
from tests.conftest import toy_jets


def test_written_file_is_the_published_pandas_layout(toptagging_file):
    frame = pd.read_hdf(toptagging_file, "table")
    floats, ints = column_names()
    assert list(frame.columns) == floats + ints
    assert len(floats) == 804 and floats[:4] == ["E_0", "PX_0", "PY_0", "PZ_0"]
    with h5py.File(toptagging_file) as f:
        table = f["table/table"]
        assert table.dtype.names == ("index", "values_block_0", "values_block_1")
        assert table.dtype["values_block_0"].shape == (804,)


def test_chunked_subsample_reads_exactly_the_requested_rows(toptagging_file):
    frame = pd.read_hdf(toptagging_file, "table").to_numpy()
    rows = np.array([599, 0, 17, 18, 250, 251, 401])
    chunks = list(iter_chunks(toptagging_file, rows=rows, chunk_size=100))
    read_rows = np.concatenate([c.rows for c in chunks])
    np.testing.assert_array_equal(read_rows, np.sort(rows))
    constituents = np.concatenate([c.constituents for c in chunks])
    np.testing.assert_array_equal(constituents.reshape(len(rows), -1), frame[np.sort(rows), :800])
    labels = np.concatenate([c.is_signal for c in chunks])
    np.testing.assert_array_equal(labels, frame[np.sort(rows), -1])
    assert max(len(c.rows) for c in chunks) <= 100


def test_file_appended_in_pieces_reads_like_one_piece(tmp_path):
    from hepad_cli.data.toptagging_format import write_toptagging_h5

    jets = toy_jets(30, 1, np.random.default_rng(0))
    path = tmp_path / "pieces.h5"
    write_toptagging_h5(path, jets[:10], np.zeros(10), append=True)
    write_toptagging_h5(path, jets[10:], np.zeros(20), append=True)
    assert count_jets(path) == 30
    read = np.concatenate([c.constituents for c in iter_chunks(path, chunk_size=7)])
    np.testing.assert_array_equal(read, jets)


def test_not_hdf5_and_truncated_files_are_refused(tmp_path, toptagging_file):
    text = tmp_path / "notes.h5"
    text.write_text("not an HDF5 file")
    with pytest.raises(LayoutError, match="not a readable HDF5"):
        count_jets(text)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(toptagging_file.read_bytes()[: toptagging_file.stat().st_size // 3])
    with pytest.raises(LayoutError):
        list(iter_chunks(truncated))


def test_hdf5_with_other_keys_is_refused(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["jets"] = np.zeros((3, 59))
    with pytest.raises(LayoutError, match="table/table"):
        count_jets(path)
