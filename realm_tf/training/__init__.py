"""The REALM pre-training job: strategies, set-up of data and index, the training loop."""
