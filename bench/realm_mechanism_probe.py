r"""Probe: REALM's retrieval learning on the seeded miniature of `tests/realm_miniature.py`.

A reader warm-started to copy (then frozen), an ICT-style retriever warm start to a given
recall, then REALM steps (`realm_steps.make_train_step`) on one relation's questions;
recall@5 is measured on the other relation's questions, never trained on.

  python bench/realm_mechanism_probe.py [--seeds=0,1,2] [--lr=1e-4] [--steps=100]
      [--ict_target=0.3] [--refresh_every=1]

The defaults are the miniature's (`MiniatureSettings`), which `tests/test_realm_mechanism.py`
uses; `--refresh_every=1000` never refreshes the index (the paper's stale-index ablation).

Prints one JSON line per seed: recall@5 of the held-out and the training questions at the
REALM start and end, the ICT steps taken, and the last step's loss and retrieval utility
(nats per token). Progress goes to stderr.
"""

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import realm_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)

from tests import realm_miniature  # noqa: E402


def main() -> None:
  defaults = realm_miniature.MiniatureSettings()
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--lr", type=float, default=defaults.realm_learning_rate,
                      help="REALM peak learning rate")
  parser.add_argument("--steps", type=int, default=defaults.realm_steps, help="REALM steps")
  parser.add_argument("--ict_target", type=float, default=defaults.ict_target,
                      help="ICT warm start until this recall@5 of the training questions")
  parser.add_argument("--refresh_every", type=int, default=defaults.refresh_every,
                      help="REALM steps between re-embeddings of the index")
  args = parser.parse_args()
  settings = dataclasses.replace(defaults, realm_learning_rate=args.lr,
                                 realm_steps=args.steps, ict_target=args.ict_target,
                                 refresh_every=args.refresh_every)
  for seed in [int(s) for s in args.seeds.split(",")]:
    result = realm_miniature.Miniature(seed, settings, verbose=True).run()
    print(json.dumps(dict(seed=seed, lr=args.lr, steps=args.steps,
                          ict_target=args.ict_target,
                          refresh_every=args.refresh_every, **result)), flush=True)


if __name__ == "__main__":
  main()
