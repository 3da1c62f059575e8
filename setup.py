"""realm-tf: REALM and ORQA on TensorFlow 2."""

import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(name):
  with open(os.path.join(HERE, name)) as f:
    return [line.strip() for line in f if line.strip() and not line.startswith("#")]


setuptools.setup(
    name="realm-tf",
    version="0.1.0",
    description="REALM retrieval-augmented pre-training and ORQA fine-tuning on TensorFlow 2",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["realm_tf*", "orqa*", "export*"]),
    package_data={"realm_tf.sample_data": ["*.jsonl", "*.md", "*.txt"],
                  "orqa": ["web/*.html", "web/*.js", "web/*.css"]},
    # tf-models-official must be installed separately with --no-deps
    # (requirements-nodeps.txt); its declared dependencies are not needed.
    install_requires=[r for r in _requirements("requirements.txt")
                      if not r.startswith(("pytest", "hypothesis", "selenium"))],
    extras_require={"test": ["pytest==9.2.0", "pytest-timeout==2.4.0",
                             "hypothesis==6.170.15", "selenium==4.51.0"]},
)
