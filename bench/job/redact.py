"""Secrets and local paths kept out of what is written down or published.

`redact` masks credentials in any text that may hold a URI: a password in
`scheme://user:password@host` and the value of a secret-looking query parameter
(`?token=...`). It is applied before a run's params, tags and config are stored, to a sweep's
command and grid, and to every line the commands print. `without_paths` shortens absolute
local paths (home folders, store and data locations) to their last part, for reports meant
for publishing."""

from __future__ import annotations

import logging
import re

MASK = "***"
# user:password@ after scheme://, also as Hydra prints an override (scheme\://user\:password@).
# The password runs to the last "@" of the line that comes before another "://", as URI
# parsers split it (it may hold "@", "/", ":" or a space): masking too much is the safe side.
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*\\?://)(?P<user>[^:/@\s\\]*)(?P<sep>\\?:)"
    r"(?:(?!://)[^\n])*@"
)
# a user part alone can be a token (https://TOKEN@host): masked whole
_TOKEN_USER = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*\\?://)[^:/@\s\\'\"]+@")
# MLflow UI's own link parameters that name no secret (a saved view's id)
_PUBLIC_QUERY = "viewStateShareKey"
_QUERY = re.compile(
    rf"(?P<key>[?&;](?!{_PUBLIC_QUERY}=)(?:[\w.-]*(?:token|pass|pwd|secret|key|auth|cred|sig)[\w.-]*)=)"
    r"[^&;\s'\"]*",
    re.IGNORECASE,
)
# an absolute path: after sqlite:///, or where a word starts (line start, space, quote, "=",
# "(", ","), never inside a name such as "<b>x</b>"
_ABSOLUTE = re.compile(r"(?:(?<=sqlite:///)|(?<=sqlite\\:///)|(?<![^\s'\"=(,]))/[^\s'\"|,;`]*")


def redact(text: str) -> str:
    """The text with every URI's password and secret query values replaced by ***."""
    if not isinstance(text, str):
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}{m['sep']}{MASK}@", text)
    text = _TOKEN_USER.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


def redacted(node):
    """A config (nested dicts and lists) with every string redacted."""
    if isinstance(node, dict):
        return {k: redacted(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [redacted(v) for v in node]
    return redact(node)


def without_paths(text: str) -> str:
    """The text with each absolute path shortened to "…/<its last part>"."""
    if not isinstance(text, str):
        return text
    return _ABSOLUTE.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def redact_logs() -> None:
    """Every log record this process makes masks credentials from now on, whoever logs it and
    through whichever handlers (Hydra prints each job's overrides, a tracking.uri with its
    password among them, and reconfigures its handlers between jobs)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def masked_record(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        message = record.getMessage()
        if (clean := redact(message)) != message:
            record.msg, record.args = clean, None
        return record

    masked_record.redacts = True
    logging.setLogRecordFactory(masked_record)


def scrub_files(folder, pattern: str = "*.yaml") -> None:
    """Hydra's own records of a run or sweep (multirun.yaml, .hydra/*.yaml) with credentials
    masked: Hydra writes the config as typed, a tracking.uri's password included."""
    from pathlib import Path

    for path in Path(folder).rglob(pattern):
        try:
            text = path.read_text()
            if (clean := redact(text)) != text:
                path.write_text(clean)
        except OSError:  # a record we cannot rewrite stays as Hydra wrote it
            continue
