"""The best-export record shared by REALM pre-training and ORQA fine-tuning."""
import json

import pytest

from realm_tf.training import best_metric


def test_record_round_trip_and_improvement(tmp_path):
  assert best_metric.read(str(tmp_path), "exact_match") is None
  assert best_metric.improves(0.0, None)
  path = best_metric.write(str(tmp_path), "exact_match", 7,
                           {"exact_match": 0.25, "top_5_match": 0.5})
  assert path == str(tmp_path / best_metric.FILENAME)
  record = json.loads((tmp_path / best_metric.FILENAME).read_text())
  assert record == dict(metric="exact_match", value=0.25, global_step=7,
                        metrics={"exact_match": 0.25, "top_5_match": 0.5})
  assert best_metric.read(str(tmp_path), "exact_match") == 0.25
  assert best_metric.improves(0.26, 0.25)
  assert not best_metric.improves(0.25, 0.25)  # A tie keeps the earlier export.


def test_reads_the_older_realm_format_and_refuses_another_metric(tmp_path):
  (tmp_path / best_metric.FILENAME).write_text(
      json.dumps({"retrieval_utility": 0.125, "global_step": 3}))
  assert best_metric.read(str(tmp_path), "retrieval_utility") == 0.125
  best_metric.write(str(tmp_path), "exact_match", 1, {"exact_match": 1.0})
  with pytest.raises(ValueError, match="exact_match, not retrieval_utility"):
    best_metric.read(str(tmp_path), "retrieval_utility")
