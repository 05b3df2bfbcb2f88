"""Credentials masked in every shape a URI carries them, against reference strings; paths
shortened only where a path starts."""

from __future__ import annotations

import pytest

from bench.job.redact import redact, without_paths


@pytest.mark.parametrize(
    "text,masked",
    [
        ("postgresql://user:pw@db:5432/mlflow", "postgresql://user:***@db:5432/mlflow"),
        ("http://user:a@b@127.0.0.1:5731", "http://user:***@127.0.0.1:5731"),  # "@" inside
        ("postgresql://u:pa/ss@h/db: cannot connect", "postgresql://u:***@h/db: cannot connect"),
        ("uri='postgresql://u:pa ss@h/db' x", "uri='postgresql://u:***@h/db' x"),  # a space
        ("http://TOKEN123@host/x", "http://***@host/x"),  # a token as the user
        ("tracking.uri=http\\://u\\:pw@h\\:5000 seed=0", "tracking.uri=http\\://u\\:***@h\\:5000 seed=0"),
        ("db?sslmode=require&access_key=K1&sig=S2", "db?sslmode=require&access_key=***&sig=***"),
        ("https://h/x?token=abc&password=def", "https://h/x?token=***&password=***"),
        ("sqlite:////tmp/x.db and http://127.0.0.1:5000/#/e/1", "sqlite:////tmp/x.db and http://127.0.0.1:5000/#/e/1"),
        ("postgresql://u:p@h/db http://127.0.0.1:5000/#/x", "postgresql://u:***@h/db http://127.0.0.1:5000/#/x"),
        ("/#/e/1/runs?viewStateShareKey=key-numbers&api_key=K", "/#/e/1/runs?viewStateShareKey=key-numbers&api_key=***"),  # the UI's view id
    ],
)  # fmt: skip
def test_credentials_are_masked(text, masked):
    assert redact(text) == masked


@pytest.mark.parametrize(
    "text,shortened",
    [
        ("data from /work/shared/data/mnist ok", "data from …/mnist ok"),
        ("sqlite:////home/u/results/mlflow.db", "sqlite:///…/mlflow.db"),
        ("a=/tmp/z ('/home/u/x')", "a=…/z ('…/x')"),
        ('experiment="<b>x</b> <script>a</script>"', 'experiment="<b>x</b> <script>a</script>"'),
        ("http://127.0.0.1:5000/#/x", "http://127.0.0.1:5000/#/x"),
    ],
)
def test_only_paths_are_shortened(text, shortened):
    assert without_paths(text) == shortened
