"""Export-directory discovery, retention and atomic commit."""

import os

import pytest

from realm_tf.retrieval import export_dirs


def _make_exports(model_dir, prefix, timestamps):
  for ts in timestamps:
    os.makedirs(os.path.join(model_dir, "export", prefix, str(ts)))


def test_numeric_sort_with_trailing_slash(tmp_path):
  """The original export_utils_test: 10 sorts after 2, model_dir may end with '/'."""
  model_dir = str(tmp_path) + "/"
  _make_exports(str(tmp_path), "tf_hub", [2, 10, 9])
  os.makedirs(os.path.join(str(tmp_path), "export", "tf_hub", "temp-11"))  # Ignored.
  assert export_dirs.newest_export_path(model_dir, "tf_hub") == os.path.join(
      str(tmp_path), "export", "tf_hub", "10")
  assert [export_dirs.timestamp_of(p) for p in export_dirs.export_paths(
      export_dirs.export_base(model_dir, "tf_hub"))] == [2, 9, 10]
  assert export_dirs.tfhub_export_path(model_dir, "tf_hub", "embedder").endswith(
      "/export/tf_hub/10/embedder")
  assert export_dirs.newest_export_path(model_dir, "missing") is None


def test_clean_exports_keeps_newest(tmp_path):
  """The original export_utils_test: cleaning 7..11 keeping 3 leaves {9, 10, 11}."""
  _make_exports(str(tmp_path), "tf_hub", range(7, 12))
  deleted = export_dirs.clean_exports(str(tmp_path), "tf_hub", exports_to_keep=3)
  assert sorted(os.path.basename(p) for p in deleted) == ["7", "8"]
  assert sorted(os.listdir(tmp_path / "export" / "tf_hub"), key=int) == ["9", "10", "11"]


def test_clean_exports_refuses_paths_outside_export(tmp_path, monkeypatch):
  _make_exports(str(tmp_path), "tf_hub", [1, 2])
  monkeypatch.setattr(export_dirs, "export_paths",
                      lambda base: [str(tmp_path / "1"), str(tmp_path / "2")])
  with pytest.raises(export_dirs.ExportDirError, match="not under an export"):
    export_dirs.clean_exports(str(tmp_path), "tf_hub", 1)
  with pytest.raises(ValueError):
    export_dirs.clean_exports(str(tmp_path), "tf_hub", 0)


def test_commit_directory_is_a_rename_and_never_overwrites(tmp_path):
  final = str(tmp_path / "export" / "encoded" / "5")
  tmp = export_dirs.temp_dir_for(final)
  os.makedirs(tmp)
  (tmp_path / "export" / "encoded" / os.path.basename(tmp) / "f").write_text("x")
  assert export_dirs.export_paths(str(tmp_path / "export" / "encoded")) == []
  export_dirs.commit_directory(tmp, final)
  assert not os.path.exists(tmp) and open(os.path.join(final, "f")).read() == "x"
  other = export_dirs.temp_dir_for(final)
  os.makedirs(other)
  with pytest.raises(export_dirs.ExportDirError, match="already exists"):
    export_dirs.commit_directory(other, final)


def test_global_step_and_timestamps(tmp_path):
  assert export_dirs.read_global_step(str(tmp_path)) is None
  export_dirs.write_global_step(str(tmp_path), 42)
  assert export_dirs.read_global_step(str(tmp_path)) == 42
  (tmp_path / "global_step.txt").write_text("garbage")
  assert export_dirs.read_global_step(str(tmp_path)) is None
  _make_exports(str(tmp_path), "x", [100])
  base = export_dirs.export_base(str(tmp_path), "x")
  assert export_dirs.new_timestamp(base, now=50) == 101
  assert export_dirs.new_timestamp(base, now=500) == 500
