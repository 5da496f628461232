"""The file readers for every task type (.npz, CSV/JSONL, image folders with a labels file), and the bad
inputs a new user makes: each refused with one sentence naming the file, the row and the fix."""

import gzip
import json
import re

import numpy as np
import pytest
from PIL import Image

from transferkit.data import ArrayDataset, ImageFolderDataset, load_npz, load_text_file, make_splits
from transferkit.errors import TransferkitError


def write(path, text: str):
    path.write_bytes(text.encode("utf-8"))
    return path


def refused(match: str, fn, *args, **kw) -> str:
    with pytest.raises(TransferkitError, match=match) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value) and str(e.value).endswith(".")
    return str(e.value)


# ------------------------------------------------------------------------------------ task types: .npz
def test_npz_regression_targets_are_float32_vectors_or_matrices(tmp_path):
    np.savez(tmp_path / "r.npz", x=np.ones((3, 2), np.float32), y=np.array([1.5, -2.0, 3.25]))
    ds = load_npz(tmp_path / "r.npz", task="regression")
    assert ds.targets.dtype == np.float32 and ds.targets.tolist() == [1.5, -2.0, 3.25] and ds.class_names is None
    assert ds.task == "regression" and float(ds[1][1]) == -2.0
    np.savez(tmp_path / "r2.npz", x=np.ones((2, 2), np.float32), y=np.array([[1, 2], [3, 4]]))
    assert load_npz(tmp_path / "r2.npz", task="regression").targets.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_npz_multilabel_targets_are_multi_hot(tmp_path):
    y = np.array([[1, 0, 1], [0, 0, 0]], dtype=np.uint8)
    np.savez(tmp_path / "m.npz", x=np.ones((2, 4), np.float32), y=y)
    ds = load_npz(tmp_path / "m.npz", task="multilabel")
    assert ds.targets.dtype == np.float32 and ds.targets.tolist() == [[1, 0, 1], [0, 0, 0]]
    assert ds[0][1].tolist() == [1.0, 0.0, 1.0]


def test_npz_bad_targets_for_the_task_are_named(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((2, 2), np.float32), y=np.array([1.0, 0.5]))
    msg = refused("y\\[1\\] = 0.5 is not a class index.*set model.task: regression", load_npz,
                  tmp_path / "a.npz")
    assert msg.startswith(f"'{tmp_path / 'a.npz'}': ")
    np.savez(tmp_path / "b.npz", x=np.ones((2, 2), np.float32), y=np.array([1.0, np.nan]))
    refused("y\\[1\\] = nan is not a finite number; remove or impute", load_npz, tmp_path / "b.npz",
            task="regression")
    np.savez(tmp_path / "c.npz", x=np.ones((2, 2), np.float32), y=np.array([[1, 0], [0, 2]]))
    refused("y\\[1\\] = \\[0, 2\\], but multi-hot targets are 0 or 1", load_npz, tmp_path / "c.npz",
            task="multilabel")
    np.savez(tmp_path / "d.npz", x=np.array([[1.0], [np.inf]]), y=np.array([0, 1]))
    refused("x\\[1\\] contains NaN or infinite", load_npz, tmp_path / "d.npz")
    refused("multi-hot \\[N, C\\].*got shape \\(2,\\)", load_npz, tmp_path / "a.npz", task="multilabel")
    refused("set model.task: multilabel", load_npz, tmp_path / "c.npz")
    refused("Unknown task 'regresion'. Did you mean 'regression'", load_npz, tmp_path / "a.npz", task="regresion")


# ------------------------------------------------------------------------------ task types: CSV / JSONL
def test_csv_regression_and_vector_targets(tmp_path):
    ds = load_text_file(write(tmp_path / "r.csv", "text,label\ngood,4.5\nbad,-1e-1\n"), task="regression")
    assert ds.targets.tolist() == [4.5, np.float32(-0.1)] and ds.class_names is None and float(ds[0][1]) == 4.5
    ds = load_text_file(write(tmp_path / "v.csv", "text,label\na,1;2\nb,3|4\n"), task="regression")
    assert ds.targets.tolist() == [[1, 2], [3, 4]]


def test_csv_and_jsonl_multilabel_map_names_to_columns(tmp_path):
    ds = load_text_file(write(tmp_path / "m.csv", "text,label\na,cat;dog\nb,dog\nc,\nd, bird | cat\n"),
                        task="multilabel")
    assert ds.class_names == ["bird", "cat", "dog"]
    assert ds.targets.tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 1, 0]]
    rows = [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": []}, {"text": "c", "label": "y"}]
    ds = load_text_file(write(tmp_path / "m.jsonl", "\n".join(map(json.dumps, rows))), task="multilabel")
    assert ds.class_names == ["x", "y"] and ds.targets.tolist() == [[1, 1], [0, 0], [0, 1]]
    ds = load_text_file(write(tmp_path / "i.jsonl", '{"text": "a", "label": [0, 3]}\n'), task="multilabel")
    assert ds.class_names is None and ds.targets.tolist() == [[1, 0, 0, 1]]


def test_classification_keeps_names_as_written_and_indices_as_numbers(tmp_path):
    ds = load_text_file(write(tmp_path / "c.csv", "text,label\na,2\nb,0\n"))
    assert ds.class_names is None and ds.targets.tolist() == [2, 0]
    ds = load_text_file(write(tmp_path / "n.csv", "text,label\na,00\nb,pos\nc,0\n"))
    assert ds.class_names == ["0", "00", "pos"] and ds.targets.tolist() == [1, 2, 0]


def test_unparseable_values_name_file_row_and_fix(tmp_path):
    path = write(tmp_path / "r.csv", "text,label\na,1.5\nb,high\n")
    refused(re.escape(f"'{path}' row 2 (line 3): the target 'high' is not a number"), load_text_file, path,
            task="regression")
    path = write(tmp_path / "nan.csv", "text,label\na,1.5\nb,nan\n")
    refused("row 2 \\(line 3\\).*not a number", load_text_file, path, task="regression")
    path = write(tmp_path / "w.jsonl", '{"text": "a", "label": [1, 2]}\n{"text": "b", "label": [1]}\n')
    refused("row 2 \\(line 2\\): 1 target value\\(s\\) where the first row has 2", load_text_file, path,
            task="regression")
    path = write(tmp_path / "f.csv", "text,label\na,0\nb,0.5\n")
    refused("row 2 \\(line 3\\): the label '0.5' is a real number.*set model.task: regression", load_text_file, path)
    path = write(tmp_path / "l.jsonl", '{"text": "a", "label": ["x"]}\n')
    refused("row 1 \\(line 1\\).*set model.task: multilabel", load_text_file, path)


# ------------------------------------------------------------------ section 5: bad CSV / JSONL (regressions)
def test_csv_row_without_label_is_refused_not_a_class_named_none(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\ngood,pos\nbad\nok,neg\n")
    msg = refused("row 2 \\(line 3\\) has no value for 'label'", load_text_file, path)
    assert str(path) in msg and "fill it in or remove the row" in msg


def test_csv_empty_label_cell_is_refused(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\ngood,pos\nbad,\nok,neg\n")
    refused(f"'{re.escape(str(path))}' row 2 \\(line 3\\) has no label; fill it in", load_text_file, path)


def test_csv_unterminated_quote_names_the_row_where_it_opens(tmp_path):
    path = write(tmp_path / "t.csv", 'text,label\ngood,pos\n"bad,neg\nok,neg\nfine,pos\n')
    refused("row 2 \\(line 3\\): a quoted field opens here and is never closed; close the quote", load_text_file,
            path)
    path = write(tmp_path / "u.csv", 'text,label\n"say "hi" now",pos\nok,neg\n')
    refused("row 1 \\(line 2\\): a quote ends a field that goes on", load_text_file, path)


def test_csv_row_with_an_unquoted_comma_is_refused(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\ngood, really,pos\nok,neg\n")
    refused("row 1 \\(line 2\\) has 3 fields but the header has 2; quote a field that contains a comma",
            load_text_file, path)


def test_csv_keeps_carriage_returns_inside_quoted_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'text,label\r\n"line one\rline two\r\nthree",pos\r\nok,neg\r\n')
    assert load_text_file(path).texts == ["line one\rline two\r\nthree", "ok"]


def test_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\ngood,pos\nbad,neg\n".encode("utf-8-sig"))
    assert load_text_file(path).texts == ["good", "bad"]


def test_not_gzip_data_in_a_gz_file_is_refused(tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(b"text,label\ngood,pos\n")
    refused("Cannot read .* check that the file is complete gzip", load_text_file, path)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a", "label": 1}\n' * 50)[:30])
    refused("Cannot read", load_text_file, path)


def test_jsonl_rows_that_are_not_objects_or_lack_the_label_are_named(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n')
    refused("line 2 holds a JSON list, not an object", load_text_file, path)
    path = write(tmp_path / "b.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n')
    refused("row 2 \\(line 2\\) has no 'label'", load_text_file, path)
    path = write(tmp_path / "c.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n')
    refused("row 2 \\(line 2\\) has no label", load_text_file, path)


def test_jsonl_labels_are_not_silently_rounded_or_reinterpreted(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 1.5}\n')
    refused("row 2 \\(line 2\\): the label 1.5 is not a class index", load_text_file, path)
    path = write(tmp_path / "b.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": true}\n')
    refused("the label True is not a class", load_text_file, path)
    ds = load_text_file(write(tmp_path / "c.csv", "text,label\na,1_0\nb,3\n"))  # not the number 10
    assert ds.class_names == ["1_0", "3"]


# ------------------------------------------------------------------------------------------- .npz (regressions)
def test_npz_string_labels_are_class_names(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.ones((3, 2), np.float32), y=np.array(["dog", "cat", "dog"]))
    ds = load_npz(tmp_path / "s.npz")
    assert ds.class_names == ["cat", "dog"] and ds.targets.tolist() == [1, 0, 1]


def test_npz_inputs_without_a_feature_axis_are_refused(tmp_path):
    np.savez(tmp_path / "v.npz", x=np.arange(3.0), y=np.arange(3))
    refused("need a feature axis.*x\\[:, None\\]", load_npz, tmp_path / "v.npz")


def test_npz_object_arrays_empty_and_damaged_files_are_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.ones((2, 2)), y=np.array([object(), object()], dtype=object))
    refused("Cannot read .* no Python objects", load_npz, tmp_path / "o.npz")
    np.savez(tmp_path / "e.npz", x=np.ones((0, 2)), y=np.zeros(0, dtype=int))
    refused("holds no examples", load_npz, tmp_path / "e.npz")
    good = (tmp_path / "o.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    refused("Cannot read", load_npz, tmp_path / "cut.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    refused("single array, not an .npz archive", load_npz, tmp_path / "one.npz")


def test_npz_integers_that_float32_would_round_are_refused():
    x = np.array([[2**24 + 1, 0], [1, 2]], dtype=np.int64)
    refused("beyond 2\\*\\*24", ArrayDataset, x, [0, 1])


# ------------------------------------------------------------------------------------------ image folders
def _png(path, value: int = 0, size=(4, 4), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).convert(mode).save(path)


def test_image_folder_labels_file_for_every_task(tmp_path):
    for i, name in enumerate(["a.png", "b.png", "sub/c.png"]):
        _png(tmp_path / name, 50 * i)
    write(tmp_path / "labels.csv", "file,label\na.png,cat;dog\nsub/c.png,dog\nb.png,\n")
    ds = ImageFolderDataset(tmp_path, task="multilabel")
    assert ds.class_names == ["cat", "dog"] and ds.targets.tolist() == [[1, 1], [0, 1], [0, 0]]
    x, y = ds[1]
    assert y.tolist() == [0.0, 1.0] and abs(float(x[0, 0, 0]) - 100 / 255) < 1e-6
    write(tmp_path / "labels.csv", "file,label\na.png,0.5\nb.png,1\nsub/c.png,-2\n")
    assert ImageFolderDataset(tmp_path, task="regression").targets.tolist() == [0.5, 1.0, -2.0]
    write(tmp_path / "labels.csv", "file,label\na.png,cat\nb.png,dog\nsub/c.png,cat\n")
    ds = ImageFolderDataset(tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.targets.tolist() == [0, 1, 0] and ds[1][1] == 1


def test_image_folder_labels_file_problems_are_named(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    write(tmp_path / "labels.csv", "file,label\na.png,1\n")
    refused("'b.png' has no row in 'labels.csv'", ImageFolderDataset, tmp_path, task="regression")
    write(tmp_path / "labels.csv", "file,label\na.png,1\nb.png,2\na.png,3\n")
    refused("row 3 \\(line 4\\): 'a.png' is listed again \\(first in row 1\\)", ImageFolderDataset, tmp_path,
            task="regression")
    write(tmp_path / "labels.csv", "file,label\na.png,1\nc.png,2\n")
    refused("row 2 \\(line 3\\): 'c.png' is not an image file", ImageFolderDataset, tmp_path, task="regression")
    write(tmp_path / "labels.csv", "file,label\na.png,1\n../b.png,2\n")
    refused("'../b.png' is not a path inside", ImageFolderDataset, tmp_path, task="regression")
    (tmp_path / "labels.csv").unlink()
    refused("has no labels.csv, which a regression task needs", ImageFolderDataset, tmp_path, task="regression")


def test_image_folder_truncated_jpeg_is_refused_when_loaded(tmp_path):
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, format="JPEG")
    for c in ("cat", "dog"):
        _png(tmp_path / c / "ok.png", size=(24, 24))
    (tmp_path / "dog" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 7 // 10])  # passes verify()
    refused("'dog/cut.jpg' is not a readable image", ImageFolderDataset, tmp_path)


def test_image_folder_16_bit_pixels_are_refused_not_clipped(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.array([[0, 30000]], dtype=np.uint16)).save(tmp_path / c / "0.png")
    refused("has I;16 pixels \\(not 8-bit\\)", ImageFolderDataset, tmp_path, channels=1)


def test_image_folder_of_mixed_sizes_needs_image_size(tmp_path):
    _png(tmp_path / "cat" / "0.png", size=(4, 4))
    _png(tmp_path / "dog" / "0.png", size=(5, 4))
    refused("different sizes \\(4x4 and 5x4\\); set data.image_size", ImageFolderDataset, tmp_path)
    assert ImageFolderDataset(tmp_path, image_size=3)[1][0].shape == (3, 3, 3)


def test_image_folder_skips_hidden_files(tmp_path):
    _png(tmp_path / "cat" / "0.png")
    _png(tmp_path / "dog" / "0.png")
    (tmp_path / "dog" / "._0.png").write_bytes(b"macOS resource fork")
    assert len(ImageFolderDataset(tmp_path)) == 2


# ------------------------------------------------------------------------------------------------ splits
def test_splits_of_regression_and_multilabel_targets_are_uniform_draws():
    y = np.linspace(0, 1, 20, dtype=np.float32)
    sp = make_splits(y, seed=0, val_fraction=0.1, test_fraction=0.25, fraction=0.5)
    assert (len(sp.test), len(sp.val), len(sp.train)) == (5, 2, 6)
    assert len(np.unique(np.concatenate([sp.train, sp.val, sp.test]))) == 13
    m = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    assert len(make_splits(m, seed=0, val_fraction=0.0, test_fraction=0.5).test) == 6
    with pytest.raises(TransferkitError, match="use data.label_fraction"):
        make_splits(y, shots=2)


def test_encode_labels_names_the_row_it_cannot_read():
    from transferkit.data.targets import encode_labels

    where = lambda i: f"row {i + 1}"  # noqa: E731
    with pytest.raises(TransferkitError, match="row 2: the target 'x' is not a number"):
        encode_labels(["1", "x"], "regression", where)
    assert encode_labels(["1", "2.5"], "regression", where)[0].tolist() == [1.0, 2.5]


def test_csv_text_longer_than_128_kib_loads(tmp_path):
    long = "word " * 40000  # 200 KB in one quoted field: beyond the csv module's default field limit
    path = write(tmp_path / "t.csv", f'text,label\n"{long}",pos\nok,neg\n')
    assert load_text_file(path).texts == [long, "ok"]
